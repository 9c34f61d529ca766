-- Request detail previews (req-scale): the request page carries at most a preview of each execution's output
-- (`left()` in the read, so a whole output is never loaded for it) and groups identical outcomes by this digest:
-- sha256 (hex) of the UTF-8 of the whole stored output.
--
-- Stored, not computed on read: hashing on read would detoast and hash every whole output (50 MB for 1,000
-- targets × 50 KiB) on every load of the page, the cost the preview removes. Each write of the output already
-- rewrites the whole value (services/executions.ts appends in the application), so hashing it then adds a small
-- constant factor to a write that happens anyway. Kept by a trigger rather than by the application: every writer
-- (the report path, seeds, a hand-run UPDATE) keeps it right, and nobody can store a digest that does not match.
-- The default is the digest of '' (the output's own default), so inserts through Prisma need not name it.
ALTER TABLE "execution" ADD COLUMN "outputDigest" TEXT NOT NULL
    DEFAULT 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

CREATE FUNCTION "execution_output_digest"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW."outputDigest" := encode(sha256(convert_to(NEW."output", 'UTF8')), 'hex');
    RETURN NEW;
END;
$$;

-- UPDATE OF either column: only writes that name the output (or try to set the digest) pay for the hash.
CREATE TRIGGER "execution_output_digest" BEFORE INSERT OR UPDATE OF "output", "outputDigest" ON "execution"
    FOR EACH ROW EXECUTE FUNCTION "execution_output_digest"();

-- Backfill: the trigger computes it for every execution that has output.
UPDATE "execution" SET "outputDigest" = '' WHERE "output" <> '';

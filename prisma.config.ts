// Prisma CLI configuration. Only `prisma generate` runs here (no native schema engine can be fetched on
// these machines); migrations are applied by packages/db's own migrator. The URL is only read by the CLI's
// migrate commands where the engine is available.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/pyreach' },
});

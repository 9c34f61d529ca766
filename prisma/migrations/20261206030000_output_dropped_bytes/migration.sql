-- Truncation marked at the cut point (issue 16 item 4): how many bytes of an execution's output were cut (by the
-- harness's 1 MiB cap inside the target, the agent fitting its report into one message, or the control plane's
-- own cap), so the request page can say "… N bytes cut here …" where the kept output ends. NULL: nothing was cut,
-- or it was cut by an agent that did not count.
ALTER TABLE "execution" ADD COLUMN "outputDroppedBytes" INTEGER;
ALTER TABLE "execution" ADD CONSTRAINT "execution_outputDroppedBytes_nonnegative" CHECK ("outputDroppedBytes" >= 0);

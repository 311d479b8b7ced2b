-- A SKIPPED run never started (SPEC §2): earlier versions stored the claim time as its
-- started_at, which clients read as lateness. Its finished_at (when it was recorded) stays.
UPDATE "job_runs" SET "started_at" = NULL WHERE "status" = 'SKIPPED' AND "started_at" IS NOT NULL;

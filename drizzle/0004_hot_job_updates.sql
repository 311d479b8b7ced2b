DROP INDEX "jobs_due_idx";--> statement-breakpoint
-- Room on each page for the new version of a job row that every claim writes, so the update stays
-- on its page (HOT) and the old version is pruned there. Applies to pages written from now on.
ALTER TABLE "jobs" SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);
--> statement-breakpoint
-- Runs are appended and each is updated once when it ends; where autovacuum runs, it keeps up at
-- thousands of runs a second only if it starts long before the default 20% of the table is dead.
ALTER TABLE "job_runs" SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
--> statement-breakpoint
ALTER TABLE "log_entries" SET (autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

DROP INDEX "job_runs_one_running";--> statement-breakpoint
ALTER TABLE "jobs" ALTER COLUMN "period_seconds" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ALTER COLUMN "next_due_at" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "breaker_failures" integer;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "breaker_probe_seconds" integer DEFAULT 30 NOT NULL;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "max_concurrent" integer;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "circuit_state" text DEFAULT 'CLOSED' NOT NULL;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "circuit_failures" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "circuit_opened_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "circuit_next_probe_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "connectors" ADD COLUMN "circuit_probe_run_id" bigint;--> statement-breakpoint
ALTER TABLE "job_runs" ADD COLUMN "attempt" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "job_runs" ADD COLUMN "retry_of" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "cron" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "time_zone" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "end_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "overlap" text DEFAULT 'SKIP' NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "misfire" text DEFAULT 'RUN_ONCE' NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_max_attempts" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_backoff_seconds" integer DEFAULT 10 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_backoff_factor" double precision DEFAULT 2 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_max_backoff_seconds" integer DEFAULT 3600 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "auto_pause_after_failures" integer;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "consecutive_failures" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "queued_due_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "queued_missed" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_attempt" integer;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_of" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "retry_scheduled_at" timestamp (3) with time zone;--> statement-breakpoint
CREATE UNIQUE INDEX "job_runs_retry_key" ON "job_runs" USING btree ("job_id","scheduled_at","attempt") WHERE "job_runs"."trigger" = 'RETRY';--> statement-breakpoint
CREATE INDEX "job_runs_running_idx" ON "job_runs" USING btree ("job_id") WHERE "job_runs"."status" = 'RUNNING';--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_period_or_cron" CHECK (("jobs"."period_seconds" is null) <> ("jobs"."cron" is null));
CREATE TABLE "job_runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_id" text NOT NULL,
	"trigger" text NOT NULL,
	"scheduled_at" timestamp (3) with time zone NOT NULL,
	"started_at" timestamp (3) with time zone,
	"finished_at" timestamp (3) with time zone,
	"status" text NOT NULL,
	"error" text,
	"instance" text,
	"missed" integer DEFAULT 0 NOT NULL,
	"lease_token" uuid,
	"lease_expires_at" timestamp (3) with time zone,
	"cancel_requested_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"connector_id" text NOT NULL,
	"method" text NOT NULL,
	"period_seconds" integer NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"paused_note" text,
	"timeout_seconds" integer,
	"anchor_at" timestamp (3) with time zone NOT NULL,
	"next_due_at" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "jobs_period_positive" CHECK ("jobs"."period_seconds" > 0)
);
--> statement-breakpoint
CREATE TABLE "log_entries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	"level" text NOT NULL,
	"message" text NOT NULL,
	"job_id" text,
	"run_id" bigint,
	"details" jsonb
);
--> statement-breakpoint
CREATE UNIQUE INDEX "job_runs_due_key" ON "job_runs" USING btree ("job_id","scheduled_at") WHERE "job_runs"."trigger" = 'SCHEDULE';--> statement-breakpoint
CREATE UNIQUE INDEX "job_runs_one_running" ON "job_runs" USING btree ("job_id") WHERE "job_runs"."status" = 'RUNNING';--> statement-breakpoint
CREATE INDEX "job_runs_lease_idx" ON "job_runs" USING btree ("lease_expires_at") WHERE "job_runs"."status" = 'RUNNING';--> statement-breakpoint
CREATE INDEX "job_runs_job_page_idx" ON "job_runs" USING btree ("job_id","scheduled_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "job_runs_page_idx" ON "job_runs" USING btree ("scheduled_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "jobs_due_idx" ON "jobs" USING btree ("next_due_at") WHERE "jobs"."enabled";--> statement-breakpoint
CREATE INDEX "log_entries_page_idx" ON "log_entries" USING btree ("at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "log_entries_job_page_idx" ON "log_entries" USING btree ("job_id","at" DESC NULLS LAST,"id" DESC NULLS LAST);
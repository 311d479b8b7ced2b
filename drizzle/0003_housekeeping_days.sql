-- The daily housekeeping (SPEC §4): one row per UTC day, claimed by one instance of the cluster.
CREATE TABLE "housekeeping_days" (
	"day" date PRIMARY KEY NOT NULL,
	"instance" text NOT NULL,
	"claimed_at" timestamp (3) with time zone NOT NULL,
	"finished_at" timestamp (3) with time zone
);

// Every GraphQL operation the dashboard sends: the public API only (SPEC §11), nothing a client
// could not ask. test/web-documents.test.ts validates each against the schema.

export const JOB_FIELDS = `fragment JobFields on Job {
  id name externalCall connectorId period cron timeZone enabled pausedNote nextRunAt consecutiveFailures
}`;

export const RUN_FIELDS = `fragment RunFields on JobRun {
  id jobId status trigger scheduledAt startedAt finishedAt durationMs error instance missed attempt retryOf
}`;

export const ME = `query Me { me { name role } }`;

/** The whole list: 10,000 jobs answer in well under a second without their runs. */
export const JOBS = `query Jobs { jobs { ...JobFields } }
${JOB_FIELDS}`;

/** The runs in progress, page by page: a job with one is `running`. */
export const RUNNING = `query Running($after: String) {
  runs(status: RUNNING, first: 500, after: $after) { edges { node { id jobId } } pageInfo { hasNextPage endCursor } }
}`;

/** The strips of recent outcomes of the rows on screen. */
export const STRIPS = `query Strips($ids: [ID!]!) {
  jobs(ids: $ids) { id runs(first: 12) { edges { node { ...RunFields } } } }
}
${RUN_FIELDS}`;

export const CONNECTORS = `query Connectors { connectors { id } }`;

export const JOB = `query Job($id: ID!) {
  job(id: $id) {
    ...JobFields
    timeoutSeconds endAt overlap misfire autoPauseAfterFailures createdAt updatedAt
    retry { maxAttempts backoffSeconds backoffFactor maxBackoffSeconds }
    nextRuns(count: 10) { at localTime dst }
  }
}
${JOB_FIELDS}`;

export const JOB_RUNS = `query JobRuns($jobId: ID!, $after: String) {
  runs(jobId: $jobId, first: 50, after: $after) { edges { node { ...RunFields } } pageInfo { hasNextPage endCursor } }
}
${RUN_FIELDS}`;

export const LOG_FIELDS = `fragment LogFields on LogEntry { id at level message jobId runId details }`;

export const JOB_LOG = `query JobLog($jobId: ID!, $level: LogLevel, $after: String) {
  logEntries(jobId: $jobId, level: $level, first: 50, after: $after) { edges { node { ...LogFields } } pageInfo { hasNextPage endCursor } }
}
${LOG_FIELDS}`;

export const PAUSE = `mutation Pause($id: ID!, $note: String) { pauseJob(id: $id, note: $note) { ...JobFields } }
${JOB_FIELDS}`;

export const RESUME = `mutation Resume($id: ID!) { resumeJob(id: $id) { ...JobFields } }
${JOB_FIELDS}`;

export const RUN_NOW = `mutation RunNow($id: ID!) { runJobNow(id: $id) { ...RunFields } }
${RUN_FIELDS}`;

export const UPDATE = `mutation Update($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ...JobFields } }
${JOB_FIELDS}`;

export const DELETE = `mutation Delete($id: ID!) { deleteJob(id: $id) }`;

export const PAUSE_MANY = `mutation PauseAll($ids: [ID!]!, $note: String) { pauseJobs(ids: $ids, note: $note) { ...JobFields } }
${JOB_FIELDS}`;

export const RESUME_MANY = `mutation ResumeAll($ids: [ID!]!) { resumeJobs(ids: $ids) { ...JobFields } }
${JOB_FIELDS}`;

/** Every job's events: the list and an open job's runs follow them. */
export const JOB_EVENTS = `subscription JobEvents { jobEvents { kind at jobId job { ...JobFields } run { ...RunFields } } }
${JOB_FIELDS}
${RUN_FIELDS}`;

export const LOG_ADDED = `subscription LogAdded($jobId: ID!) { logEntryAdded(jobId: $jobId) { ...LogFields } }
${LOG_FIELDS}`;

/** Every document, by name, for the test that validates them. */
export const DOCUMENTS: Record<string, string> = {
  ME,
  JOBS,
  RUNNING,
  STRIPS,
  CONNECTORS,
  JOB,
  JOB_RUNS,
  JOB_LOG,
  PAUSE,
  RESUME,
  RUN_NOW,
  UPDATE,
  DELETE,
  PAUSE_MANY,
  RESUME_MANY,
  JOB_EVENTS,
  LOG_ADDED,
};

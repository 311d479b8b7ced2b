/** The example operations GraphiQL opens with, so a newcomer can try the service at once. */
export const GRAPHIQL_TABS = [
  {
    query: `# Create a job that calls a server operation from ./operations every 5 seconds.
mutation CreateJob {
  createJob(input: {
    id: "marking-codes"
    name: "Load new marking codes"
    externalCall: "ServerOperationConnector:Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру"
    period: "0:0:5"
  }) {
    id period nextRunAt
  }
}`,
  },
  {
    query: `# Watch runs live (start this, then create or run a job in another tab).
subscription WatchJobs {
  jobEvents {
    kind at jobId
    run { id status scheduledAt startedAt durationMs error missed }
  }
}`,
  },
  {
    query: `# Jobs, their last run and the newest runs.
query Jobs {
  jobs { id name externalCall period enabled nextRunAt lastRun { status startedAt durationMs error } }
  runs(first: 10) { edges { node { id jobId status scheduledAt startedAt durationMs error missed } } }
}`,
  },
  {
    query: `# The service's log in the database, newest first.
query Log {
  logEntries(first: 20) { edges { node { at level message jobId runId details } } pageInfo { hasNextPage endCursor } }
}`,
  },
];

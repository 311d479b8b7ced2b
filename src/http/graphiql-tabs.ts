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
    query: `# A cron job at 03:15 every night, Moscow time, retried twice when it fails, with its next runs.
# nextRuns previews due times without running anything; dst says when daylight saving moved one.
mutation CreateCronJob {
  createJob(input: {
    id: "удаление-документов"
    name: "Delete documents completed long ago"
    externalCall: "ServerOperationConnector:УдалитьЗавершенныеДокументы"
    cron: "15 3 * * *"
    timeZone: "Europe/Moscow"
    retry: { maxAttempts: 3, backoffSeconds: 60 }
  }) {
    id cron timeZone nextRunAt
    nextRuns(count: 5) { at localTime dst }
  }
}`,
  },
  {
    query: `# Make the stored jobs match a list: dryRun answers what would be created, updated (with the
# fields that change) and unchanged, and changes nothing. Without dryRun it applies the list in one
# transaction; prune: true (an admin's) would also delete the jobs the list leaves out.
mutation ApplyJobsDryRun {
  applyJobs(input: {
    dryRun: true
    jobs: [
      { id: "marking-codes", name: "Load new marking codes", period: "0:0:5",
        externalCall: "ServerOperationConnector:Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру" }
      { id: "crypto-tails", name: "Clean crypto tails", cron: "0 */2 * * *", timeZone: "Europe/Moscow",
        externalCall: "ServerOperationConnector:ОчисткаКриптохвостов", misfire: SKIP }
    ]
  }) {
    created
    updated { id fields }
    unchanged
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

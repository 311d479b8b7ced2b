// npm run bench:profile — one loaded window of the service, to find where its time goes:
// JOBS jobs (10,000) at 0:0:1 calling a no-op operation, a WINDOW-second (20) window measured as
// the `lateness` section does, the service under `--cpu-prof` (profiles in PROFILE_DIR,
// bench/results/profiles by default; NO_PROFILE=1 runs without). While the window runs, a
// watcher prints what the database's sessions wait on as soon as more than STALL_RUNS (3,000)
// runs are in progress at once: a stall, such as the deadlock between lease renewals and batched
// run ends that this found. At the end it prints the runs that did not succeed, by status and error.
// SERVICE_ENV (JSON) adds to the service's environment, e.g. SERVICE_ENV='{"LOG_LEVEL":"debug"}'.
import path from 'node:path';
import postgres from 'postgres';
import { openBench, root, sleep } from './lib.ts';
import { openLoad } from './sections/lateness.ts';

const jobs = Number(process.env['JOBS'] ?? 10_000);
const windowSeconds = Number(process.env['WINDOW'] ?? 20);
const stallRuns = Number(process.env['STALL_RUNS'] ?? 3000);
const profileDir = process.env['PROFILE_DIR'] ?? path.join(root, 'bench', 'results', 'profiles');

const { context, close } = await openBench(false);
const load = await openLoad(context, 'profile', {
  nodeArgs: process.env['NO_PROFILE'] ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
  env: process.env['SERVICE_ENV'] ? (JSON.parse(process.env['SERVICE_ENV']) as Record<string, string>) : {},
});
const sql = postgres(load.url, { max: 1, onnotice: () => {} });
try {
  await load.grow(jobs);
  await sleep(5000);
  let reported = false;
  const watcher = setInterval(() => {
    if (reported) return;
    void (async () => {
      const [running] = await sql<{ count: number }[]>`select count(*)::int as count from job_runs where status = 'RUNNING'`;
      if (reported || running!.count <= stallRuns) return;
      reported = true;
      console.log(`stall: ${running!.count} runs in progress at once; the database's sessions:`);
      console.table(
        await sql`
          select application_name as app, state, wait_event_type as waits, wait_event as on, now() - query_start as for,
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 70) as query
          from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`,
      );
    })().catch((error: unknown) => console.error('the stall watcher failed:', error));
  }, 500);
  const window = await load.measure(windowSeconds);
  clearInterval(watcher);
  console.log(JSON.stringify({ ...window, perSecond: undefined }));
  console.table(
    await sql`select status, left(error, 80) as error, count(*)::int from job_runs where status <> 'SUCCEEDED' group by 1, 2 order by 3 desc`,
  );
  await load.service.stop(10_000);
  if (!process.env['NO_PROFILE']) console.log(`CPU profile of the service in ${profileDir}`);
} finally {
  await sql.end();
  await load.close();
  await close();
}

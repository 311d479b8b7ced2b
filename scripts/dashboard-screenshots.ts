// `npm run docs:screenshots`: the README's pictures of the dashboard (docs/dashboard-*.png), taken
// with Debian's Chromium (test/helpers/browser.ts) from a service started here on a throwaway
// embedded PostgreSQL, with the example operations of ./operations and a few jobs that show each
// state. Run it again after changing the page.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildWebOnce, launchChromium, openPage } from '../test/helpers/browser.ts';
import { repoRoot, ServiceProcess } from '../test/helpers/process.ts';

const docs = path.join(repoRoot, 'docs');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-screenshots-'));

const JOBS = [
  {
    id: 'marking-codes',
    name: 'Load new marking codes',
    externalCall: 'ServerOperationConnector:Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру',
    period: '0:0:5',
  },
  {
    id: 'crypto-tails',
    name: 'Clean crypto tails',
    externalCall: 'ServerOperationConnector:ОчисткаКриптохвостов',
    cron: '30 2 * * *',
    timeZone: 'Europe/Moscow',
  },
  {
    id: 'old-documents',
    name: 'Delete completed documents',
    externalCall: 'ServerOperationConnector:УдалитьЗавершенныеДокументы',
    period: '1:0:0',
  },
  { id: 'export-to-1c', name: 'Export stock to 1C', externalCall: 'ServerOperationConnector:Fail', period: '0:0:2' },
  { id: 'heartbeat', name: 'Heartbeat', externalCall: 'ServerOperationConnector:Noop', period: '0:0:1' },
  { id: 'выгрузка-остатков', name: 'Выгрузка остатков', externalCall: 'ServerOperationConnector:Noop', period: '0:0:2' },
  { id: 'nightly-report', name: 'Nightly report', externalCall: 'ServerOperationConnector:Sleep', period: '0:0:15' },
];

async function gql(port: number, query: string, variables: Record<string, unknown> = {}): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const answer = (await response.json()) as { errors?: unknown[] };
  if (answer.errors) throw new Error(`${query}: ${JSON.stringify(answer.errors)}`);
}

buildWebOnce();
const service = new ServiceProcess({ DATA_DIR: dataDir, SERVER_OPERATIONS_DIR: path.join(repoRoot, 'operations') });
try {
  const port = await service.waitUntilListening(120_000);
  await gql(port, 'mutation($jobs: [CreateJobInput!]!) { applyJobs(input: { jobs: $jobs }) { created } }', { jobs: JOBS });
  await gql(port, 'mutation { pauseJob(id: "old-documents", note: "until the 1C upgrade is done") { id } }');
  await gql(port, 'mutation { runJobNow(id: "nightly-report") { id } }');
  // Some runs to show in the strips.
  await new Promise((resolve) => setTimeout(resolve, 14_000));
  const browser = await launchChromium();
  try {
    const { page, close } = await openPage(browser, `http://localhost:${port}/`, { viewport: { width: 1200, height: 520 } });
    await page.getByRole('link', { name: 'heartbeat', exact: true }).waitFor();
    await page.waitForTimeout(1500);
    await page.screenshot({ path: path.join(docs, 'dashboard-jobs.png') });
    await page.getByRole('link', { name: 'export-to-1c', exact: true }).click();
    await page.getByRole('table', { name: 'Runs' }).waitFor();
    await page.setViewportSize({ width: 1200, height: 760 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: path.join(docs, 'dashboard-job.png') });
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await page.getByRole('dialog').getByRole('textbox', { name: 'Note' }).fill('1C is down for maintenance until 14:00');
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(docs, 'dashboard-pause.png') });
    await close();
  } finally {
    await browser.close();
  }
  console.log(`Wrote ${['dashboard-jobs.png', 'dashboard-job.png', 'dashboard-pause.png'].map((f) => `docs/${f}`).join(', ')}`);
} finally {
  await service.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

// Debian's Chromium driven by playwright-core (never a browser that playwright downloads): the
// dashboard's browser tests, its benchmark section and its README screenshots. `.ci/run` installs
// the `chromium` package; without it the browser tests say they skipped and why.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { repoRoot } from './process.ts';

/** Where Debian (and Ubuntu) put Chromium; CHROMIUM_PATH names another. */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

/** The Chromium binary to drive, or null when there is none. */
export function chromiumPath(): string | null {
  const given = process.env['CHROMIUM_PATH'];
  if (given) return fs.existsSync(given) ? given : null;
  return CANDIDATES.find((file) => fs.existsSync(file)) ?? null;
}

/** Why the browser tests cannot run here, or null when they can. */
export function noBrowserReason(): string | null {
  return chromiumPath() === null
    ? `no Chromium found (${CANDIDATES.join(', ')}; or set CHROMIUM_PATH): install Debian's with \`apt-get install chromium\`, as .ci/run does`
    : null;
}

export function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(noBrowserReason()!);
  // Headless, and without the sandbox, which needs user namespaces a container (and root) may lack.
  return chromium.launch({ executablePath, headless: true, chromiumSandbox: false });
}

/** Builds the dashboard (web/ → web/dist/) when stale, as `npm start` does; once per process. */
let built = false;
export function buildWebOnce(): void {
  if (built) return;
  execFileSync(process.execPath, ['scripts/build-web.mjs', '--if-stale'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  built = true;
}

export interface OpenedPage {
  page: Page;
  /** Errors the page threw or logged, for a check that there were none. */
  errors: string[];
  close(): Promise<void>;
}

/** A new tab (its own session storage) in English, at 1280×800 unless told otherwise. */
export async function openPage(
  browser: Browser,
  url: string,
  options: { locale?: string; viewport?: { width: number; height: number } } = {},
): Promise<OpenedPage> {
  const context = await browser.newContext({
    locale: options.locale ?? 'en-US',
    viewport: options.viewport ?? { width: 1280, height: 800 },
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

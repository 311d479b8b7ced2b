// Marking codes (КМ, коды маркировки): the seed's two server jobs around them.
//
//   Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру — every few minutes, pull new codes from an
//     external system and load them into the `marking_codes` table.
//   ОчисткаКриптохвостов — every night, strip the "crypto tails" off the stored codes.
//
// A code as scanned from a DataMatrix looks like
//   01<GTIN, 14 digits>21<serial>␝91<key id>␝92<crypto signature>
// where ␝ is the GS1 group separator (U+001D). Everything from the first ␝ on is the crypto tail:
// needed to verify a code once, useless for looking it up, and it makes one code look like many.

import { createHash } from 'node:crypto';

const GS = '\u001d';

/** The table is this configuration's own; the service never touches it. */
async function ensureTable(sql) {
  // The advisory lock keeps two instances' first runs from racing on the catalog.
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('operations:marking_codes'))`;
    await tx`
      create table if not exists marking_codes (
        code text primary key,
        loaded_at timestamptz not null default now()
      )`;
  });
}

/** Reads the source: a JSON array of code strings, or `{ "codes": [...] }`. */
async function fetchCodes(url, signal) {
  const response = await fetch(url, { signal, headers: { accept: 'application/json' } });
  if (!response.ok) throw new Error(`Marking code source answered ${response.status} ${response.statusText}`);
  const body = await response.json();
  const list = Array.isArray(body) ? body : body?.codes;
  if (!Array.isArray(list)) throw new Error('Marking code source did not answer a JSON array of codes (or {"codes": [...]})');
  return list
    .filter((code) => typeof code === 'string')
    .map((code) => code.trim())
    .filter((code) => code.length > 0);
}

/** Offline sample data: the same due time always yields the same codes, so a repeat loads nothing. */
function sampleCodes(scheduledAt) {
  const gtins = ['04600000000015', '04600000000022', '04600000000039'];
  return gtins.map((gtin, i) => {
    const hash = createHash('sha256').update(`${scheduledAt.toISOString()}/${i}`).digest();
    const serial = hash.toString('base64url').replace(/[-_]/g, 'x').slice(0, 13);
    const crypto = hash.toString('base64').slice(0, 44);
    return `01${gtin}21${serial}${GS}91EE07${GS}92${crypto}`;
  });
}

/** The URL without credentials or query string, fit for the log. */
const shown = (url) => {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
};

async function loadMarkingCodes(ctx) {
  const { sql } = ctx;
  const url = process.env.MARKING_CODES_SOURCE_URL;
  const received = url ? await fetchCodes(url, ctx.signal) : sampleCodes(ctx.scheduledAt);
  ctx.signal.throwIfAborted();
  await ensureTable(sql);
  const unique = [...new Set(received)];
  const inserted =
    unique.length === 0
      ? []
      : await sql`
    insert into marking_codes (code)
    select unnest(${sql.array(unique)}::text[])
    on conflict (code) do nothing
    returning code`;
  await ctx.log('INFO', `Loaded ${inserted.length} new marking codes (${received.length} received)`, {
    source: url ? shown(url) : 'sample data (MARKING_CODES_SOURCE_URL is not set)',
    received: received.length,
    inserted: inserted.length,
  });
  return inserted.length;
}

const BATCH = 5000;

async function cleanCryptoTails(ctx) {
  const { sql } = ctx;
  await ensureTable(sql);
  let cleaned = 0;
  let merged = 0;
  while (!ctx.signal.aborted) {
    // Per batch: remove the codes with a tail and put back their part before the first GS. A part
    // that is already stored (or comes from several tails) stays one row: that is the dedupe.
    const [batch] = await sql`
      with tailed as (
        select code from marking_codes where strpos(code, ${GS}) > 0 limit ${BATCH} for update
      ), removed as (
        delete from marking_codes m using tailed t where m.code = t.code
        returning split_part(m.code, ${GS}, 1) as base, m.loaded_at
      ), restored as (
        insert into marking_codes (code, loaded_at)
        select base, min(loaded_at) from removed group by base
        on conflict (code) do nothing
        returning code
      )
      select (select count(*) from removed)::int as removed, (select count(*) from restored)::int as restored`;
    cleaned += batch.removed;
    merged += batch.removed - batch.restored;
    if (batch.removed < BATCH) break;
  }
  const stopped = ctx.signal.aborted ? ' (stopped early: the run was aborted)' : '';
  await ctx.log('INFO', `Cleaned the crypto tails of ${cleaned} marking codes; ${merged} duplicates removed${stopped}`, {
    cleaned,
    duplicatesRemoved: merged,
  });
  return cleaned;
}

export default {
  'Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру': loadMarkingCodes,
  ОчисткаКриптохвостов: cleanCryptoTails,
};

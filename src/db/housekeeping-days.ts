import type { Queryable } from './client.ts';

/**
 * Claims `day`'s housekeeping for `instance`: true when it is this instance's to do. The day's
 * row makes the claim exactly once across a cluster. The same instance may take back a claim
 * it did not finish (its housekeeping failed, and it tries again); another instance never does,
 * so a housekeeping whose instance died is left to the next day's.
 */
export async function claimHousekeepingDay(sql: Queryable, day: string, instance: string, at: Date): Promise<boolean> {
  const rows = await sql`
    insert into housekeeping_days (day, instance, claimed_at) values (${day}, ${instance}, ${at})
    on conflict (day) do update set claimed_at = excluded.claimed_at
      where housekeeping_days.instance = excluded.instance and housekeeping_days.finished_at is null
    returning day`;
  return rows.length === 1;
}

/** Records that `day`'s housekeeping is done. */
export async function finishHousekeepingDay(sql: Queryable, day: string, instance: string, at: Date): Promise<void> {
  await sql`update housekeeping_days set finished_at = ${at} where day = ${day} and instance = ${instance}`;
}

// Times and durations as the reader's locale writes them.
import { lang } from './i18n.ts';

const time = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTime = new Intl.DateTimeFormat(lang, {
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

/** A moment: the time of day when it is today, else the date too; '—' for none. */
export function formatMoment(iso: string | null, now: number = Date.now()): string {
  if (iso === null) return '—';
  const at = new Date(iso);
  return new Date(now).toDateString() === at.toDateString() ? time.format(at) : dateTime.format(at);
}

/** A duration in the largest units that say it: 850 ms, 4.2 s, 3 min 5 s, 2 h 10 min. */
export function formatDuration(ms: number | null): string {
  if (ms === null) return '—';
  const sign = ms < 0 ? '−' : '';
  const abs = Math.abs(ms);
  const s = lang === 'ru' ? { ms: 'мс', s: 'с', min: 'мин', h: 'ч', d: 'д' } : { ms: 'ms', s: 's', min: 'min', h: 'h', d: 'd' };
  if (abs < 1000) return `${sign}${Math.round(abs)} ${s.ms}`;
  if (abs < 60_000) return `${sign}${(abs / 1000).toFixed(abs < 10_000 ? 1 : 0)} ${s.s}`;
  const total = Math.round(abs / 1000);
  const [d, h, m, sec] = [Math.floor(total / 86400), Math.floor(total / 3600) % 24, Math.floor(total / 60) % 60, total % 60];
  if (d > 0) return `${sign}${d} ${s.d} ${h} ${s.h}`;
  if (h > 0) return `${sign}${h} ${s.h} ${m} ${s.min}`;
  return `${sign}${m} ${s.min} ${sec} ${s.s}`;
}

/** "in 12 s" / "через 12 с", for a time ahead; nothing for one past. */
export function formatIn(iso: string | null, now: number = Date.now()): string {
  if (iso === null) return '';
  const ms = Date.parse(iso) - now;
  if (ms <= 0) return '';
  return lang === 'ru' ? `через ${formatDuration(ms)}` : `in ${formatDuration(ms)}`;
}

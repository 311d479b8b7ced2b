import pino, { type Logger } from 'pino';

/** Structured JSON lines; pretty when a person watches a terminal. */
export function createLogger(level: string, instance: string): Logger {
  const pretty = process.stdout.isTTY;
  return pino({
    level,
    base: { instance },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  });
}

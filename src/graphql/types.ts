import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { builder } from './builder.ts';

/** Object refs shared by the type files, declared once so they can refer to each other. */
export const JobRef = builder.objectRef<JobRow>('Job');
export const JobRunRef = builder.objectRef<RunRow>('JobRun');
export const LogEntryRef = builder.objectRef<LogRow>('LogEntry');

// The sections of `npm run bench`, in the order they run.
import type { BenchContext, SectionResult } from '../lib.ts';
import { lateness, sustainedRate } from './scheduling.ts';

export interface Section {
  name: string;
  what: string;
  run(context: BenchContext): Promise<SectionResult>;
}

export const SECTIONS: Section[] = [
  { name: 'lateness', what: 'N jobs at 0:0:1 calling a no-op operation (isolated), N = 1,000 and 10,000', run: lateness },
  { name: 'rate', what: 'the highest sustained runs/s before p99 lateness passes 100 ms', run: sustainedRate },
];

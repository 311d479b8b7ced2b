import { builder } from './builder.ts';
import './scalars.ts';
import './enums.ts';
import './jobs.ts';
import './bulk-jobs.ts';
import './schedules.ts';
import './apply-jobs.ts';
import './runs.ts';
import './log.ts';
import './connectors.ts';
import './subscriptions.ts';
import './auth.ts';

export const schema = builder.toSchema({ sortSchema: false });

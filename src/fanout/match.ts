import { closestName } from '../closest-name.js';
import { categoryOf, FIXED_CATEGORY_TYPES, PING_EVENT_TYPE } from '../records/event.js';
import { compileEventPattern, compileWordsPattern, isEventPattern, type WordsPredicate } from './event-pattern.js';
import { compileFilter, type Filter, type FilterPredicate } from './filter.js';

/** Listener `events` aliases and the event names they stand for. */
export const EVENT_ALIASES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  'on-task-complete': Object.freeze(['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED']),
  'on-execution-complete': Object.freeze(['WORKFLOW_SUCCEEDED', 'WORKFLOW_FAILED', 'WORKFLOW_CANCELLED']),
});

export interface ListenerTarget {
  readonly kind: 'execution' | 'task';
  readonly id: string;
}

/** The part of a listener record that decides which events it receives. */
export interface ListenerRule {
  readonly workbook: string;
  readonly event_types: readonly string[];
  readonly events?: readonly string[] | null;
  readonly target?: ListenerTarget | null;
  readonly filter?: Filter | null;
  readonly enabled: boolean;
}

/** The part of an event envelope matching reads; the filter sees the whole object. */
export interface MatchableEvent {
  readonly type: string;
  readonly workbook?: string | null;
  readonly execution_id?: string | null;
  readonly task_id?: string | null;
}

export type ListenerMatcher = (event: MatchableEvent) => boolean;

/** Replaces aliases by the event names they stand for; keeps order, drops repeats. */
export function expandEventAliases(events: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of events) {
    if (Object.hasOwn(EVENT_ALIASES, name)) for (const e of EVENT_ALIASES[name]) out.add(e);
    else out.add(name);
  }
  return [...out];
}

/** Whether a pattern could match some type of `category` (any other dotted type is a NOTIFICATION). */
function patternReaches(pattern: string, category: string): boolean {
  if (category === 'NOTIFICATION') return true;
  const matches = compileEventPattern(pattern);
  return (FIXED_CATEGORY_TYPES[category as 'EXECUTION' | 'TASK'] ?? []).some(matches);
}

/**
 * The entries of `events` (as written, aliases and patterns included) of which no event falls
 * in one of `event_types`: such an entry can never match, which a listener check may want to
 * refuse.
 */
export function eventsOutsideCategories(rule: Pick<ListenerRule, 'event_types' | 'events'>): string[] {
  const categories = new Set<string>(rule.event_types);
  return (rule.events ?? []).filter((entry) =>
    isEventPattern(entry)
      ? ![...categories].some((c) => patternReaches(entry, c))
      : !expandEventAliases([entry]).some((e) => categories.has(categoryOf(e))),
  );
}

/** Every name a listener's `events` can spell exactly that has a fixed category: Mistral's, the operation triads, the aliases. */
const KNOWN_EVENT_NAMES: readonly string[] = [...FIXED_CATEGORY_TYPES.EXECUTION, ...FIXED_CATEGORY_TYPES.TASK, ...Object.keys(EVENT_ALIASES)];

/**
 * The known event name or alias an `events` entry looks like a typo of (`TASK_SUCEEDED` →
 * TASK_SUCCEEDED), or null for known names, patterns and names close to none: any of those
 * is a fine NOTIFICATION type as it stands.
 */
export function likelyEventName(entry: string): string | null {
  if (isEventPattern(entry) || Object.hasOwn(EVENT_ALIASES, entry) || categoryOf(entry) !== 'NOTIFICATION') return null;
  return closestName(entry, KNOWN_EVENT_NAMES);
}

const NEVER: ListenerMatcher = () => false;

/**
 * Compiles a listener rule once into a matcher for the fan-out hot path (every ingested event
 * against every listener of its project). The matcher reads the rule as it was when compiled.
 * PING never matches: it is sent to one listener directly, never fanned out. Throws
 * `InvalidFilterError` for a stored filter that no longer compiles (a `$regex` an older version
 * accepted that the linear-time engine cannot run).
 */
export function compileListenerRule(rule: ListenerRule): ListenerMatcher {
  if (!rule.enabled) return NEVER;

  const categories = new Set<string>(rule.event_types);
  // An empty `events` narrows nothing, as an empty `event_types` does in a Mistral subscription.
  let types: ReadonlySet<string> | null = null;
  let patterns: WordsPredicate[] = [];
  if (rule.events && rule.events.length > 0) {
    const exact = rule.events.filter((e) => !isEventPattern(e));
    patterns = rule.events.filter(isEventPattern).map(compileWordsPattern);
    types = new Set(expandEventAliases(exact).filter((e) => categories.has(categoryOf(e))));
    if (types.size === 0 && patterns.length === 0) return NEVER;
  }
  if (categories.size === 0) return NEVER;
  const named = (type: string) => {
    if (types === null || types.has(type)) return true;
    if (patterns.length === 0) return false;
    const words = type.split('.');
    return patterns.some((p) => p(words));
  };

  const workbook = rule.workbook === '*' ? null : rule.workbook;
  const targetKind = rule.target?.kind ?? null;
  const targetId = rule.target?.id ?? null;
  if (targetKind !== null && targetKind !== 'execution' && targetKind !== 'task') return NEVER;
  const filter: FilterPredicate | null =
    rule.filter && Object.keys(rule.filter).length > 0 ? compileFilter(rule.filter) : null;

  return (event) => {
    const type = event.type;
    if (type === PING_EVENT_TYPE) return false;
    // The category is always checked against the actual event, whatever a pattern says.
    if (!categories.has(categoryOf(type)) || !named(type)) return false;
    if (workbook !== null && event.workbook !== workbook) return false;
    if (targetKind === 'execution' && event.execution_id !== targetId) return false;
    if (targetKind === 'task' && event.task_id !== targetId) return false;
    return filter === null || filter(event);
  };
}

/** Whether `listener` receives `event`. Compiles the rule on each call: cache `compileListenerRule` in loops. */
export function matchesListener(listener: ListenerRule, event: MatchableEvent): boolean {
  return compileListenerRule(listener)(event);
}

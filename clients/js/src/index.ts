/**
 * `@twofold/client`: commands that resolve once their write is visible,
 * queries that read the session's own writes, over Twofold's GraphQL API.
 *
 * - `command` sends a mutation (with a `commandId`, so a retry never acts
 *   twice), takes the token from its payload and, by default, waits on the
 *   `writeVisible` subscription until every read view shows the write.
 * - `query` carries the highest token this client's commands got as the
 *   request-level extension `consistentWith`: the server answers only once
 *   its views show those writes, on any instance.
 * - `awaitVisible` is the subscription on its own.
 *
 * A wait ends when the write is visible, when the caller's time runs out
 * (NOT_VISIBLE_YET), or when an operator must act (NOT_PROJECTED: a
 * stopped view, a dead letter). A stalled view is none of these: it may
 * clear, so the wait goes on and `onStalled` is told (`reasonMeaning` and
 * `notVisibleError` are the one place this is decided).
 *
 * The server's types the client meets (`NotVisibleReason`, what a stalled
 * view waits on, the `writeVisible` answer) are generated from the
 * repository's schema.graphql at build time (scripts/generate.mjs), never
 * copied by hand.
 *
 * The one runtime dependency is `graphql-ws` (and its peer `graphql`).
 */
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import {
  Kind,
  parse,
  print,
  type DocumentNode,
  type FieldNode,
  type ObjectFieldNode,
  type OperationDefinitionNode,
  type SelectionNode,
} from 'graphql';
import {
  WRITE_VISIBLE_DOCUMENT,
  type NotVisibleReason,
  type ProjectionWaitKind,
  type TwofoldWriteVisibleSubscription,
} from './generated/schema.js';

/** A document whose result and variables types travel with it (graphql-codegen's typed document nodes). */
export interface TypedDocumentNode<Result = Record<string, any>, Variables = Record<string, any>> extends DocumentNode {
  __apiType?: (variables: Variables) => Result;
}

export type Document<Result = any, Variables = any> = string | DocumentNode | TypedDocumentNode<Result, Variables>;
export type ResultOf<D> = D extends TypedDocumentNode<infer R, any> ? R : any;
export type VariablesOf<D> = D extends TypedDocumentNode<any, infer V> ? V : Record<string, any>;

export type HeadersSource = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

/** A GraphQL error as the server sends it. */
export interface GraphQLErrorLike {
  message: string;
  path?: ReadonlyArray<string | number>;
  locations?: ReadonlyArray<{ line: number; column: number }>;
  extensions?: Record<string, unknown> & { code?: string };
}

// The server's types, generated from schema.graphql (scripts/generate.mjs), never copied by hand.
export type { NotVisibleReason, ProjectionWaitKind };

/** What a stalled view waits on, as `writeVisible` reports it (`kind`, `detail`, `since`, `blockers`). */
export type ProjectionWait = NonNullable<TwofoldWriteVisibleSubscription['writeVisible']['waitingOn']>;
/** A PostgreSQL session holding the lock a stalled view waits for. */
export type LockHolder = ProjectionWait['blockers'][number];

/** A stall met while waiting for a write: what `onStalled` is told. */
export interface Stall {
  /** The write waited for. */
  token: string;
  /** The stalled view (projection) the write waits behind. */
  view: string;
  /** What that view waits on: a lock, the SQLite write lock, an outage… */
  waitingOn: ProjectionWait;
}

export interface Visibility {
  visible: boolean;
  /**
   * Why not. From `awaitVisible`: `TIMED_OUT` (the caller's wait ended; the
   * write may still become visible) or a reason an operator must act on
   * (`PROJECTION_STOPPED`, `DEAD_LETTERED`). `STALLED` is the server's
   * answer to one capped wait; the client waits through it.
   */
  reason?: NotVisibleReason;
  /** The projection that stopped or dead-lettered the write; after `TIMED_OUT`, the stalled one the wait last met. */
  blockedBy?: string;
  /** After `TIMED_OUT`: what that stalled view waited on, when the wait met a stall. */
  waitingOn?: ProjectionWait;
}

/** Told of each stall a wait meets; see `AwaitVisibleOptions.onStalled`. */
export type StallListener = (stall: Stall) => void;

export interface RetryOptions {
  /** Retries after a 503 that carries `Retry-After` (default 3). */
  attempts?: number;
  /** The longest wait between two attempts, whatever `Retry-After` says (default 5000 ms). */
  maxDelayMs?: number;
}

export interface ClientOptions {
  /** The GraphQL endpoint, e.g. `http://127.0.0.1:8000/graphql` (relative in a browser: `/graphql`). */
  url: string;
  /** The WebSocket endpoint; default: `url` with `ws(s):` and `/ws` appended (`/graphql/ws`). */
  wsUrl?: string;
  /** Called for every HTTP request and for each WebSocket `connection_init`. */
  headers?: HeadersSource;
  /** A WebSocket implementation (in Node before 22: `import WebSocket from 'ws'`); default: the global one, else `ws`. */
  webSocketImpl?: unknown;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  retry?: RetryOptions;
  /** How long `command` waits for visibility by default (5000 ms). */
  timeoutMs?: number;
  /**
   * Told of the stalls every wait of this client meets (`command`,
   * `awaitVisible`, the urql exchange, the Apollo link) unless the call
   * gives its own `onStalled`.
   */
  onStalled?: StallListener;
}

export interface CommandOptions {
  /** `visible` (default): resolve once the views show the write; `accepted`: at commit. */
  until?: 'visible' | 'accepted';
  /** How long to wait for visibility (default: the client's `timeoutMs`, 5000 ms). */
  timeoutMs?: number;
  /** The projections to wait for (default: all). */
  projections?: string[];
  /** Told, while the command waits, of a view that is stalled (see `AwaitVisibleOptions.onStalled`). */
  onStalled?: StallListener;
  operationName?: string;
  /** Aborts the request, or the wait for visibility after it (which then rejects with `ABORTED`). */
  signal?: AbortSignal;
}

export interface CommandResult<Result> {
  data: Result;
  token: string;
  /** True once every projection waited for shows the write (false with `until: 'accepted'`). */
  visible: boolean;
  /** The `commandId` the mutation carried (the caller's, or the one added). */
  commandId?: string;
}

export interface QueryOptions {
  /** Wait for this token rather than the session's (`null`: wait for nothing). */
  consistentWith?: string | null;
  operationName?: string;
  signal?: AbortSignal;
}

export interface QueryResult<Result> {
  data: Result;
}

export interface AwaitVisibleOptions {
  /** How long to wait in all (default: the client's `timeoutMs`, 5000 ms); a stall does not end the wait sooner. */
  timeoutMs?: number;
  projections?: string[];
  /**
   * Told of each stall the wait meets: the view the write waits behind and
   * what that view waits on, so a page can say "waiting on the database".
   * The wait goes on until the write is visible or `timeoutMs` passes. With
   * a listener the server is asked in slices of 2 s, so a stall is told
   * within about 2 s of the server seeing it (without one, in slices of up
   * to 10 s, the server's cap). A listener that throws ends the wait with
   * its error.
   */
  onStalled?: StallListener;
  /** Ends the wait (and its subscription): it rejects with `ABORTED`. */
  signal?: AbortSignal;
}

/** What went wrong, with the server's `extensions.code`. */
export class TwofoldError extends Error {
  /**
   * `extensions.code` of the first error (VALIDATION, UNAUTHENTICATED,
   * FORBIDDEN, NOT_VISIBLE_YET, NOT_PROJECTED, UNAVAILABLE…), or the
   * client's own: NETWORK, HTTP, ABORTED, DISPOSED, NO_TOKEN. A write that
   * is not visible: NOT_VISIBLE_YET (it may still become visible: the wait
   * ran out, perhaps behind a stall) or NOT_PROJECTED (an operator must act).
   */
  readonly code: string;
  readonly errors: GraphQLErrorLike[];
  /** The HTTP status, when the answer came over HTTP. */
  readonly status?: number;
  /** Why a write is not visible (`command`). */
  readonly reason?: NotVisibleReason;
  /** The projection that stopped or dead-lettered the write, or the stalled one a timed-out wait last met. */
  readonly blockedBy?: string;
  /** After a wait that timed out behind a stall: what the stalled view waited on. */
  readonly waitingOn?: ProjectionWait;
  /** The write's token, when it committed but is not visible. */
  readonly token?: string;
  /** Whatever data came with the errors. */
  readonly data?: unknown;

  constructor(init: {
    code: string;
    message?: string;
    errors?: GraphQLErrorLike[];
    status?: number;
    reason?: NotVisibleReason;
    blockedBy?: string;
    waitingOn?: ProjectionWait;
    token?: string;
    data?: unknown;
    cause?: unknown;
  }) {
    const errors = init.errors ?? [];
    super(init.message ?? (errors.map((e) => e.message).join('; ') || init.code), { cause: init.cause });
    this.name = 'TwofoldError';
    this.code = init.code;
    this.errors = errors;
    this.status = init.status;
    this.reason = init.reason;
    this.blockedBy = init.blockedBy;
    this.waitingOn = init.waitingOn;
    this.token = init.token;
    this.data = init.data;
  }

  static fromErrors(errors: GraphQLErrorLike[], status?: number, data?: unknown): TwofoldError {
    const code = (errors.find((e) => typeof e.extensions?.code === 'string')?.extensions?.code as string) ?? 'GRAPHQL';
    const coded = errors.find((e) => e.extensions?.reason)?.extensions;
    const reason = coded?.reason as NotVisibleReason | undefined;
    // consistentWith's errors name the view as `blockedBy` (STALLED) or `projection` (NOT_PROJECTED).
    const view = coded?.blockedBy ?? coded?.projection;
    const blockedBy = typeof view === 'string' ? view : undefined;
    return new TwofoldError({ code, errors, status, data, reason, blockedBy });
  }
}

/** Compares two tokens (`"tx.position"`): negative, zero or positive. */
export function compareTokens(a: string, b: string): number {
  const [at, ap] = tokenParts(a);
  const [bt, bp] = tokenParts(b);
  if (at !== bt) return at < bt ? -1 : 1;
  return ap === bp ? 0 : ap < bp ? -1 : 1;
}

/** The later of two tokens (either may be absent). */
export function laterToken(a: string | null | undefined, b: string | null | undefined): string | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return compareTokens(a, b) >= 0 ? a : b;
}

function tokenParts(token: string): [bigint, bigint] {
  const match = /^(\d+)\.(\d+)$/.exec(token);
  if (!match) {
    throw new TwofoldError({
      code: 'VALIDATION',
      message: `'${String(token).slice(0, 64)}' is not a token: pass it back exactly as a mutation returned it`,
    });
  }
  return [BigInt(match[1]), BigInt(match[2])];
}

/** The token in a mutation's answer: the `token` of the first root field that has one. */
export function tokenOf(data: unknown): string | null {
  if (!data || typeof data !== 'object') return null;
  for (const value of Object.values(data as Record<string, unknown>)) {
    if (value && typeof value === 'object' && typeof (value as { token?: unknown }).token === 'string') {
      return (value as { token: string }).token;
    }
  }
  return null;
}

async function randomId(): Promise<string> {
  const webCrypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (webCrypto?.randomUUID) return webCrypto.randomUUID();
  // Node 18 has no global `crypto`; the name is not a literal so bundlers for browsers leave it alone.
  const name = 'node:crypto';
  const nodeCrypto = (await import(/* @vite-ignore */ name)) as { randomUUID(): string };
  return nodeCrypto.randomUUID();
}

function toDocument(document: Document): DocumentNode {
  return typeof document === 'string' ? parse(document) : document;
}

function operationOf(document: DocumentNode, operationName?: string): OperationDefinitionNode | undefined {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  return operationName ? operations.find((o) => o.name?.value === operationName) : operations[0];
}

/** The kind of the operation `operationName` names (default: the first) in `document`, parsed with graphql; undefined when there is none. */
export function operationKind(document: Document, operationName?: string | null): 'query' | 'mutation' | 'subscription' | undefined {
  return operationOf(toDocument(document), operationName ?? undefined)?.operation as 'query' | 'mutation' | 'subscription' | undefined;
}

/** Whether a root field's `input` carries a `commandId` (inline, or in the variable given for it). */
function carriesCommandId(field: FieldNode, variables: Record<string, unknown>): boolean {
  const input = field.arguments?.find((a) => a.name.value === 'input');
  if (input?.value.kind === Kind.VARIABLE) {
    const given = variables[input.value.name.value];
    return Boolean(given) && typeof given === 'object' && typeof (given as { commandId?: unknown }).commandId === 'string';
  }
  if (input?.value.kind === Kind.OBJECT) {
    const commandId = input.value.fields.find((f) => f.name.value === 'commandId')?.value;
    if (commandId?.kind === Kind.STRING) return true;
    if (commandId?.kind === Kind.VARIABLE) return typeof variables[commandId.name.value] === 'string';
  }
  return false;
}

/**
 * Whether a GraphQL request (a POST body) may be sent again after a 503: a
 * query or a subscription always; a mutation only when every root field's
 * `input` carries a `commandId`, since the server answers a repeat with
 * the first outcome. The document is parsed (graphql's `parse`), so a
 * comment, a fragment or whitespace before the operation cannot hide a
 * mutation. A body without document text (a persisted query's hash or
 * id) or one that does not parse is not retried: it may be a mutation.
 */
export function retryableRequest(body: { query?: unknown; variables?: unknown; operationName?: unknown }): boolean {
  if (typeof body.query !== 'string') return false;
  let operation: OperationDefinitionNode | undefined;
  try {
    operation = operationOf(parse(body.query), typeof body.operationName === 'string' ? body.operationName : undefined);
  } catch {
    return false;
  }
  if (!operation) return false;
  if (operation.operation !== 'mutation') return true;
  const variables = body.variables && typeof body.variables === 'object' ? (body.variables as Record<string, unknown>) : {};
  const fields = operation.selectionSet.selections.filter((s) => !(s.kind === Kind.FIELD && s.name.value === '__typename'));
  return fields.length > 0 && fields.every((s) => s.kind === Kind.FIELD && carriesCommandId(s, variables));
}

export interface PreparedCommand {
  document: DocumentNode;
  variables: Record<string, unknown>;
  /** The commandId it carries, when its input could be found. */
  commandId?: string;
}

/**
 * A mutation ready to send: its first root field selects `token`, and its
 * `input` carries a `commandId` (added when the caller gave none), whether
 * the input is a variable or written inline.
 */
export async function prepareCommand(
  document: Document,
  variables: Record<string, unknown> | undefined,
  operationName?: string,
): Promise<PreparedCommand> {
  const parsed = toDocument(document);
  const operation = operationOf(parsed, operationName);
  if (!operation || operation.operation !== 'mutation') {
    throw new TwofoldError({ code: 'VALIDATION', message: 'a command is a mutation: the document has no mutation operation' });
  }
  const vars: Record<string, unknown> = { ...(variables ?? {}) };
  const index = operation.selectionSet.selections.findIndex((s) => s.kind === Kind.FIELD);
  if (index < 0) return { document: parsed, variables: vars };
  let field = operation.selectionSet.selections[index] as FieldNode;
  let commandId: string | undefined;

  const input = field.arguments?.find((a) => a.name.value === 'input');
  if (input?.value.kind === Kind.VARIABLE) {
    const name = input.value.name.value;
    const given = vars[name];
    if (given && typeof given === 'object' && !Array.isArray(given)) {
      const existing = (given as { commandId?: unknown }).commandId;
      commandId = typeof existing === 'string' ? existing : await randomId();
      vars[name] = { ...given, commandId };
    }
  } else if (input?.value.kind === Kind.OBJECT) {
    const existing = input.value.fields.find((f) => f.name.value === 'commandId');
    if (existing) {
      if (existing.value.kind === Kind.STRING) commandId = existing.value.value;
      if (existing.value.kind === Kind.VARIABLE && typeof vars[existing.value.name.value] === 'string') {
        commandId = vars[existing.value.name.value] as string;
      }
    } else {
      commandId = await randomId();
      const added: ObjectFieldNode = {
        kind: Kind.OBJECT_FIELD,
        name: { kind: Kind.NAME, value: 'commandId' },
        value: { kind: Kind.STRING, value: commandId },
      };
      const value = { ...input.value, fields: [...input.value.fields, added] };
      field = { ...field, arguments: field.arguments!.map((a) => (a === input ? { ...a, value } : a)) };
    }
  }
  const selections = field.selectionSet?.selections ?? [];
  if (!selections.some((s) => s.kind === Kind.FIELD && s.name.value === 'token' && !s.alias)) {
    const token: SelectionNode = { kind: Kind.FIELD, name: { kind: Kind.NAME, value: 'token' } };
    field = { ...field, selectionSet: { kind: Kind.SELECTION_SET, selections: [...selections, token] } };
  }
  const rootSelections = operation.selectionSet.selections.map((s, i) => (i === index ? field : s));
  const newOperation: OperationDefinitionNode = { ...operation, selectionSet: { ...operation.selectionSet, selections: rootSelections } };
  const rewritten: DocumentNode = {
    ...parsed,
    definitions: parsed.definitions.map((d) => (d === operation ? newOperation : d)),
  };
  return { document: rewritten, variables: vars, commandId };
}

/** The server caps one `writeVisible` wait at 10 s; longer waits subscribe again. */
const SERVER_WAIT_CAP_MS = 10_000;
/**
 * With an `onStalled` listener, one ask waits at most this long, so a stall
 * is told within about this long of the server seeing it (the server says
 * STALLED only when a wait ends). The server's default stall bound is 2 s too.
 */
const STALL_CHECK_MS = 2_000;
/** How long past its own wait a writeVisible answer may take before the ask is presumed lost. */
const UNANSWERED_GRACE_MS = 5_000;

/**
 * What a reason the server gives for a write that is not visible means to a
 * caller still willing to wait:
 *
 * - `pending`: the server's wait ended first (`TIMED_OUT`); ask again while
 *   the caller's own time allows.
 * - `stalled`: the server's wait ended behind a stalled view (`STALLED`). A
 *   stall may clear (a lock released, the database back): tell the
 *   caller's `onStalled` and ask again, like `pending`.
 * - `operator`: it will not become visible until an operator acts (a
 *   stopped view, a dead letter): stop waiting, NOT_PROJECTED.
 *
 * The switch is exhaustive over `NotVisibleReason` as generated from
 * schema.graphql: a reason the schema gains fails the type-check here until
 * it is given a meaning. At run time a reason this build does not know (a
 * newer server) is `unknown`: the wait stops, since re-asking at once could
 * spin, and the error says to update the client.
 */
export function reasonMeaning(reason: NotVisibleReason): 'pending' | 'stalled' | 'operator' | 'unknown' {
  switch (reason) {
    case 'TIMED_OUT':
      return 'pending';
    case 'STALLED':
      return 'stalled';
    case 'PROJECTION_STOPPED':
    case 'DEAD_LETTERED':
      return 'operator';
    default:
      return unhandledReason(reason);
  }
}

/** Compiles only while every `NotVisibleReason` has a case above. */
function unhandledReason(reason: never): 'unknown' {
  void reason;
  return 'unknown';
}

/**
 * The error for a write that committed and is not visible, from what
 * `awaitVisible` answered. Written once: `command`, the urql exchange, the
 * Apollo link and the React hooks all report a write this way.
 *
 * - NOT_VISIBLE_YET, reason TIMED_OUT: the caller's wait ran out; the
 *   write may still become visible. After a stall it carries the stalled
 *   view (`blockedBy`) and what it waited on (`waitingOn`).
 * - NOT_PROJECTED, reason PROJECTION_STOPPED or DEAD_LETTERED: an operator
 *   must act.
 */
export function notVisibleError(token: string, visibility: Visibility, data?: unknown): TwofoldError {
  const reason = visibility.reason ?? 'TIMED_OUT';
  const { blockedBy, waitingOn } = visibility;
  switch (reasonMeaning(reason)) {
    case 'pending':
    case 'stalled': {
      const stall = blockedBy && waitingOn ? `; ${blockedBy} is stalled, waiting on ${describeWait(waitingOn)}` : '';
      return new TwofoldError({
        code: 'NOT_VISIBLE_YET',
        message: `the write ${token} committed but is not visible yet${stall}; it may still become visible`,
        reason: 'TIMED_OUT',
        blockedBy: waitingOn ? blockedBy : undefined,
        waitingOn,
        token,
        data,
      });
    }
    case 'operator':
      return new TwofoldError({
        code: 'NOT_PROJECTED',
        message: `the write ${token} committed but will not become visible: ${reason}${blockedBy ? ` in ${blockedBy}` : ''}; an operator must act`,
        reason,
        blockedBy,
        token,
        data,
      });
    case 'unknown':
      return new TwofoldError({
        code: 'NOT_VISIBLE_YET',
        message: `the write ${token} is not visible: the server says ${String(reason)}${blockedBy ? ` in ${blockedBy}` : ''}, which this client does not know (it was built from an older schema.graphql); update @twofold/client`,
        reason,
        blockedBy,
        token,
        data,
      });
  }
}

function describeWait(wait: ProjectionWait): string {
  return wait.detail ? `${wait.kind}: ${wait.detail}` : wait.kind;
}

function abortError(signal: AbortSignal, token?: string): TwofoldError {
  return new TwofoldError({ code: 'ABORTED', message: 'the wait was aborted', cause: signal.reason, token });
}

function defaultWsUrl(url: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  parsed.protocol = parsed.protocol === 'https:' ? 'wss:' : 'ws:';
  parsed.pathname = `${parsed.pathname.replace(/\/$/, '')}/ws`;
  return parsed.toString();
}

async function resolveHeaders(source: HeadersSource | undefined): Promise<Headers> {
  const init = typeof source === 'function' ? await source() : source;
  return new Headers(init ?? {});
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

function closeError(event: unknown): TwofoldError {
  if (Array.isArray(event)) return TwofoldError.fromErrors(event as GraphQLErrorLike[]);
  if (event instanceof TwofoldError) return event;
  const close = event as { code?: number; reason?: string } | undefined;
  if (close && typeof close.code === 'number') {
    const code = close.code === 4403 ? 'FORBIDDEN' : close.code === 4401 ? 'UNAUTHENTICATED' : 'CONNECTION_CLOSED';
    return new TwofoldError({ code, message: `the WebSocket closed (${close.code}): ${close.reason || 'no reason given'}` });
  }
  return new TwofoldError({ code: 'NETWORK', message: event instanceof Error ? event.message : String(event), cause: event });
}

interface PendingPong {
  resolve: (value: { expiresAt: number | null }) => void;
  reject: (error: unknown) => void;
}

export class TwofoldClient {
  readonly url: string;
  readonly wsUrl: string;
  private readonly options: ClientOptions;
  private session: string | null = null;
  private ws: Promise<WsClient> | null = null;
  private socket: { send(data: string): void; readyState: number } | null = null;
  private pongs: PendingPong[] = [];
  private disposed = false;

  constructor(options: ClientOptions) {
    this.options = options;
    this.url = options.url;
    this.wsUrl = options.wsUrl ?? defaultWsUrl(options.url);
  }

  /** The highest token this client's commands got (what `query` waits for). */
  get sessionToken(): string | null {
    return this.session;
  }

  /** Makes the session wait for `token` too (kept if it is later than the session's). */
  noteToken(token: string): void {
    this.session = laterToken(this.session, token);
  }

  /**
   * Sends a mutation. Resolves with its data and token once the write is
   * visible (`until: 'visible'`, the default) or at commit (`'accepted'`).
   * A stall does not end the wait: `onStalled` is told, and the command
   * waits on until the write is visible or `timeoutMs` passes. A write that
   * is not visible by then rejects with `notVisibleError`'s TwofoldError:
   * NOT_VISIBLE_YET (reason TIMED_OUT, with the last stall's `blockedBy` and
   * `waitingOn`), or NOT_PROJECTED when an operator must act (its `reason`
   * and `blockedBy` say why, its `token` what committed).
   */
  async command<D extends Document>(
    document: D,
    variables?: VariablesOf<D>,
    options: CommandOptions = {},
  ): Promise<CommandResult<ResultOf<D>>> {
    const prepared = await prepareCommand(document, variables as Record<string, unknown>, options.operationName);
    // Only a command with a commandId is retried: the server answers a repeat with the first outcome.
    const body = await this.post(
      { query: print(prepared.document), variables: prepared.variables, operationName: options.operationName },
      prepared.commandId !== undefined,
      options.signal,
    );
    const data = body.data as ResultOf<D>;
    const token = tokenOf(data);
    if (!token) {
      throw new TwofoldError({ code: 'NO_TOKEN', message: "the mutation's answer has no token", data });
    }
    this.noteToken(token);
    if ((options.until ?? 'visible') === 'accepted') {
      return { data, token, visible: false, commandId: prepared.commandId };
    }
    await this.ensureVisible(token, {
      timeoutMs: options.timeoutMs,
      projections: options.projections,
      onStalled: options.onStalled,
      signal: options.signal,
      data,
    });
    return { data, token, visible: true, commandId: prepared.commandId };
  }

  /** Runs a query that sees every write this client's commands made (see `consistentWith`). */
  async query<D extends Document>(
    document: D,
    variables?: VariablesOf<D>,
    options: QueryOptions = {},
  ): Promise<QueryResult<ResultOf<D>>> {
    const consistentWith = options.consistentWith === undefined ? this.session : options.consistentWith;
    const body = await this.post(
      {
        query: typeof document === 'string' ? document : print(document),
        variables: variables ?? {},
        operationName: options.operationName,
        extensions: consistentWith ? { consistentWith } : undefined,
      },
      true,
      options.signal,
    );
    return { data: body.data as ResultOf<D> };
  }

  /**
   * Waits (on the `writeVisible` subscription) until the views show `token`,
   * or `timeoutMs` (default: the client's, 5000 ms) passes. A stalled view
   * does not end the wait (it may clear): `onStalled` is told of it and the
   * wait goes on. Resolves with `{ visible: true }`; with `visible: false`
   * and `reason: 'TIMED_OUT'` (plus the last stall's `blockedBy` and
   * `waitingOn`) when the time ran out; at once with `PROJECTION_STOPPED`
   * or `DEAD_LETTERED` and `blockedBy` when an operator must act.
   */
  async awaitVisible(token: string, options: AwaitVisibleOptions = {}): Promise<Visibility> {
    tokenParts(token);
    const { signal, projections } = options;
    const onStalled = options.onStalled ?? this.options.onStalled;
    const deadline = Date.now() + (options.timeoutMs ?? this.options.timeoutMs ?? 5000);
    // With a listener, shorter asks: the server tells of a stall only when an ask ends.
    const slice = onStalled ? STALL_CHECK_MS : SERVER_WAIT_CAP_MS;
    let lastStall: Stall | null = null;
    for (;;) {
      if (signal?.aborted) throw abortError(signal, token);
      const wait = Math.max(0, Math.min(slice, deadline - Date.now()));
      const answer = await this.writeVisible(token, projections, wait, signal);
      if (answer.visible) return { visible: true };
      const reason = answer.reason ?? 'TIMED_OUT';
      const meaning = reasonMeaning(reason);
      if (meaning === 'operator' || meaning === 'unknown') {
        return answer.blockedBy ? { visible: false, reason, blockedBy: answer.blockedBy } : { visible: false, reason };
      }
      if (meaning === 'stalled' && answer.blockedBy && answer.waitingOn) {
        lastStall = { token, view: answer.blockedBy, waitingOn: answer.waitingOn };
        onStalled?.(lastStall);
      }
      if (Date.now() >= deadline) {
        return lastStall
          ? { visible: false, reason: 'TIMED_OUT', blockedBy: lastStall.view, waitingOn: lastStall.waitingOn }
          : { visible: false, reason: 'TIMED_OUT' };
      }
    }
  }

  /**
   * `awaitVisible`, as `command` waits: resolves once the write is visible,
   * rejects with `notVisibleError(token, …)` otherwise (`data`, when given,
   * rides on the error). What the urql exchange and the Apollo link wait with.
   */
  async ensureVisible(token: string, options: AwaitVisibleOptions & { data?: unknown } = {}): Promise<void> {
    const visibility = await this.awaitVisible(token, options);
    if (!visibility.visible) throw notVisibleError(token, visibility, options.data);
  }

  /**
   * Sends the credentials `headers` now gives over the open WebSocket (a
   * `ping` carrying `authorization`), so its subscriptions live on with the
   * new token. Resolves with the connection's new expiry (Unix seconds), or
   * `null` when no connection is open (the next one will use the new headers).
   */
  async refreshAuth(): Promise<{ expiresAt: number | null } | null> {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) return null;
    const authorization = (await resolveHeaders(this.options.headers)).get('authorization');
    if (!authorization) return null;
    return new Promise((resolve, reject) => {
      this.pongs.push({ resolve, reject });
      socket.send(JSON.stringify({ type: 'ping', payload: { authorization } }));
    });
  }

  /** Closes the WebSocket (if one was opened); the client is not to be used after. */
  dispose(): void {
    this.disposed = true;
    const ws = this.ws;
    this.ws = null;
    this.failPongs(new TwofoldError({ code: 'DISPOSED', message: 'the client was disposed' }));
    void ws?.then((client) => client.dispose()).catch(() => undefined);
  }

  private failPongs(error: unknown): void {
    const pongs = this.pongs;
    this.pongs = [];
    for (const pong of pongs) pong.reject(error);
  }

  /** One `writeVisible` ask: the server answers once, within `timeoutMs` (capped at its 10 s). */
  private async writeVisible(
    token: string,
    projections: string[] | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Visibility> {
    const client = await this.websocket();
    if (signal?.aborted) throw abortError(signal, token);
    return new Promise((resolve, reject) => {
      let result: Visibility | null = null;
      let stop: () => void = () => undefined;
      // The server answers within `timeoutMs`; an answer lost on the way (a
      // proxy, a socket that died quietly) must not hold awaitVisible past
      // its deadline: after a grace period the ask counts as timed out, and
      // awaitVisible asks again while its own deadline allows.
      const unanswered = setTimeout(() => {
        settle();
        resolve({ visible: false, reason: 'TIMED_OUT' });
      }, timeoutMs + UNANSWERED_GRACE_MS);
      const aborted = () => {
        settle();
        reject(abortError(signal!, token));
      };
      signal?.addEventListener('abort', aborted, { once: true });
      // Ends the ask: no timer, no abort listener, no subscription left behind.
      const settle = () => {
        clearTimeout(unanswered);
        signal?.removeEventListener('abort', aborted);
        stop();
      };
      stop = client.subscribe<TwofoldWriteVisibleSubscription>(
        { query: WRITE_VISIBLE_DOCUMENT, variables: { token, projections: projections ?? null, timeoutMs } },
        {
          next: (message) => {
            if (message.errors?.length) {
              settle();
              reject(TwofoldError.fromErrors(message.errors as GraphQLErrorLike[]));
              return;
            }
            const answer = message.data?.writeVisible;
            if (answer) {
              result = { visible: answer.visible };
              if (answer.reason) result.reason = answer.reason;
              if (answer.blockedBy) result.blockedBy = answer.blockedBy;
              if (answer.waitingOn) result.waitingOn = answer.waitingOn;
            }
          },
          error: (error) => {
            settle();
            reject(closeError(error));
          },
          complete: () => {
            settle();
            if (result) resolve(result);
            else reject(new TwofoldError({ code: 'NETWORK', message: 'writeVisible ended without an answer' }));
          },
        },
      );
    });
  }

  private websocket(): Promise<WsClient> {
    if (this.disposed) return Promise.reject(new TwofoldError({ code: 'DISPOSED', message: 'the client was disposed' }));
    this.ws ??= (async () => {
      let impl = this.options.webSocketImpl ?? (globalThis as { WebSocket?: unknown }).WebSocket;
      if (!impl) {
        // Node before 22 has no global WebSocket: the `ws` package, when installed.
        const name = 'ws';
        impl = ((await import(/* @vite-ignore */ name)) as { default: unknown }).default;
      }
      return createWsClient({
        url: this.wsUrl,
        webSocketImpl: impl,
        lazy: true,
        // Kept open a moment after the last wait: the next command's wait reuses it, and refreshAuth has a socket to use.
        lazyCloseTimeout: 1000,
        retryAttempts: 3,
        // 4400-4499 are the server's refusals (4401, 4403, …): trying again will not help.
        shouldRetry: (event) => !(typeof (event as { code?: number })?.code === 'number' && (event as { code: number }).code >= 4400 && (event as { code: number }).code < 4500),
        connectionParams: async () => Object.fromEntries((await resolveHeaders(this.options.headers)).entries()),
        on: {
          connected: (socket) => {
            this.socket = socket as { send(data: string): void; readyState: number };
          },
          closed: (event) => {
            this.socket = null;
            this.failPongs(closeError(event));
          },
          pong: (received, payload) => {
            if (received && payload && 'expiresAt' in payload) {
              this.pongs.shift()?.resolve({ expiresAt: (payload as { expiresAt: number | null }).expiresAt });
            }
          },
        },
      });
    })();
    return this.ws;
  }

  /**
   * A `fetch` with this client's bounded retry of a 503 that carries
   * `Retry-After`: GET requests and queries always, a mutation only when it
   * carries a `commandId` (the server answers a repeat with the first
   * outcome; see `retryableRequest`, which parses the document). Hand it to
   * urql (`fetch: tf.fetch`) or Apollo's `HttpLink`.
   */
  readonly fetch = (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const method = (init.method ?? 'GET').toUpperCase();
    let retryable = method === 'GET';
    if (!retryable && typeof init.body === 'string') {
      try {
        retryable = retryableRequest(JSON.parse(init.body) as Record<string, unknown>);
      } catch {
        retryable = false;
      }
    }
    return this.fetchWithRetry(input, init, retryable);
  };

  private async fetchWithRetry(input: RequestInfo | URL, init: RequestInit, retryable: boolean): Promise<Response> {
    const fetchImpl = this.options.fetch ?? globalThis.fetch;
    const attempts = this.options.retry?.attempts ?? 3;
    const maxDelayMs = this.options.retry?.maxDelayMs ?? 5000;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await fetchImpl(input, init);
      } catch (cause) {
        if (init.signal?.aborted) throw new TwofoldError({ code: 'ABORTED', message: 'the request was aborted', cause: init.signal.reason });
        throw new TwofoldError({ code: 'NETWORK', message: `cannot reach ${String(input).split('?')[0]}: ${(cause as Error)?.message ?? cause}`, cause });
      }
      const retryAfter = response.headers.get('retry-after');
      if (response.status !== 503 || !retryable || retryAfter === null || attempt >= attempts) return response;
      await response.body?.cancel().catch(() => undefined);
      const seconds = Number(retryAfter);
      await sleep(Math.min(maxDelayMs, Number.isFinite(seconds) ? Math.max(0, seconds) * 1000 : 1000), init.signal ?? undefined);
    }
  }

  private async post(
    body: { query: string; variables?: unknown; operationName?: string; extensions?: Record<string, unknown> },
    retryable: boolean,
    signal?: AbortSignal,
  ): Promise<{ data?: unknown }> {
    const headers = async () => {
      const h = await resolveHeaders(this.options.headers);
      h.set('content-type', 'application/json');
      if (!h.has('accept')) h.set('accept', 'application/graphql-response+json, application/json');
      return h;
    };
    const response = await this.fetchWithRetry(this.url, { method: 'POST', headers: await headers(), body: JSON.stringify(body), signal }, retryable);
    const text = await response.text();
    let json: { data?: unknown; errors?: GraphQLErrorLike[] } | undefined;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (json?.errors?.length) throw TwofoldError.fromErrors(json.errors, response.status, json.data);
    if (!response.ok || !json || typeof json !== 'object') {
      throw new TwofoldError({
        code: response.status === 503 ? 'UNAVAILABLE' : 'HTTP',
        status: response.status,
        message: `HTTP ${response.status}: ${text.slice(0, 200)}`,
      });
    }
    return json;
  }
}

/** A client for one Twofold server (or a fleet behind one address). */
export function createClient(options: ClientOptions): TwofoldClient {
  return new TwofoldClient(options);
}

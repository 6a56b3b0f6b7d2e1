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

export type NotVisibleReason = 'TIMED_OUT' | 'PROJECTION_STOPPED' | 'DEAD_LETTERED';

export interface Visibility {
  visible: boolean;
  reason?: NotVisibleReason;
  /** The projection that stopped or dead-lettered the write. */
  blockedBy?: string;
}

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
}

export interface CommandOptions {
  /** `visible` (default): resolve once the views show the write; `accepted`: at commit. */
  until?: 'visible' | 'accepted';
  /** How long to wait for visibility (default: the client's `timeoutMs`, 5000 ms). */
  timeoutMs?: number;
  /** The projections to wait for (default: all). */
  projections?: string[];
  operationName?: string;
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
  timeoutMs?: number;
  projections?: string[];
}

/** What went wrong, with the server's `extensions.code`. */
export class TwofoldError extends Error {
  /** `extensions.code` of the first error (VALIDATION, UNAUTHENTICATED, FORBIDDEN, NOT_VISIBLE_YET, NOT_PROJECTED, UNAVAILABLE…), or NETWORK / HTTP. */
  readonly code: string;
  readonly errors: GraphQLErrorLike[];
  /** The HTTP status, when the answer came over HTTP. */
  readonly status?: number;
  /** Why a write is not visible (`command`). */
  readonly reason?: NotVisibleReason;
  readonly blockedBy?: string;
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
    this.token = init.token;
    this.data = init.data;
  }

  static fromErrors(errors: GraphQLErrorLike[], status?: number, data?: unknown): TwofoldError {
    const code = (errors.find((e) => typeof e.extensions?.code === 'string')?.extensions?.code as string) ?? 'GRAPHQL';
    const reason = errors.find((e) => e.extensions?.reason)?.extensions?.reason as NotVisibleReason | undefined;
    return new TwofoldError({ code, errors, status, data, reason });
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

const WRITE_VISIBLE = `subscription TwofoldWriteVisible($token: Token!, $projections: [String!], $timeoutMs: Int) {
  writeVisible(token: $token, projections: $projections, timeoutMs: $timeoutMs) { visible reason blockedBy }
}`;
/** The server caps one `writeVisible` wait at 10 s; longer waits subscribe again. */
const SERVER_WAIT_CAP_MS = 10_000;
/** How long past its own wait a writeVisible answer may take before the ask is presumed lost. */
const UNANSWERED_GRACE_MS = 5_000;

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
   * A write that does not become visible rejects with a `TwofoldError`
   * whose `reason` and `blockedBy` say why (its `token` says what committed).
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
    const visibility = await this.awaitVisible(token, {
      timeoutMs: options.timeoutMs ?? this.options.timeoutMs,
      projections: options.projections,
    });
    if (!visibility.visible) {
      const reason = visibility.reason ?? 'TIMED_OUT';
      throw new TwofoldError({
        code: reason === 'TIMED_OUT' ? 'NOT_VISIBLE_YET' : 'NOT_PROJECTED',
        message:
          reason === 'TIMED_OUT'
            ? `the write ${token} committed but is not visible yet`
            : `the write ${token} committed but will not become visible: ${reason}${visibility.blockedBy ? ` in ${visibility.blockedBy}` : ''}; an operator must act`,
        reason,
        blockedBy: visibility.blockedBy,
        token,
        data,
      });
    }
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

  /** Waits (on the `writeVisible` subscription) until the views show `token`, or `timeoutMs` (default 5000) passes. */
  async awaitVisible(token: string, options: AwaitVisibleOptions = {}): Promise<Visibility> {
    tokenParts(token);
    const deadline = Date.now() + (options.timeoutMs ?? this.options.timeoutMs ?? 5000);
    for (;;) {
      const wait = Math.max(0, Math.min(SERVER_WAIT_CAP_MS, deadline - Date.now()));
      const answer = await this.writeVisible(token, options.projections, wait);
      if (answer.visible || answer.reason !== 'TIMED_OUT' || Date.now() >= deadline) return answer;
    }
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

  private async writeVisible(token: string, projections: string[] | undefined, timeoutMs: number): Promise<Visibility> {
    const client = await this.websocket();
    return new Promise<Visibility>((resolve, reject) => {
      let result: Visibility | null = null;
      // The server answers within `timeoutMs`; an answer lost on the way (a
      // proxy, a socket that died quietly) must not hold awaitVisible past
      // its deadline: after a grace period the ask counts as timed out, and
      // awaitVisible asks again while its own deadline allows.
      const unanswered = setTimeout(() => {
        stop();
        resolve({ visible: false, reason: 'TIMED_OUT' });
      }, timeoutMs + UNANSWERED_GRACE_MS);
      const done = (answer: Visibility) => {
        clearTimeout(unanswered);
        resolve(answer);
      };
      const fail = (error: unknown) => {
        clearTimeout(unanswered);
        reject(error);
      };
      const stop = client.subscribe<{ writeVisible: { visible: boolean; reason: NotVisibleReason | null; blockedBy: string | null } }>(
        { query: WRITE_VISIBLE, variables: { token, projections: projections ?? null, timeoutMs } },
        {
          next: (message) => {
            if (message.errors?.length) {
              fail(TwofoldError.fromErrors(message.errors as GraphQLErrorLike[]));
              return;
            }
            const answer = message.data?.writeVisible;
            if (answer) {
              result = { visible: answer.visible };
              if (answer.reason) result.reason = answer.reason;
              if (answer.blockedBy) result.blockedBy = answer.blockedBy;
            }
          },
          error: (error) => fail(closeError(error)),
          complete: () =>
            result ? done(result) : fail(new TwofoldError({ code: 'NETWORK', message: 'writeVisible ended without an answer' })),
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
   * outcome). Hand it to urql (`fetch: tf.fetch`) or Apollo's `HttpLink`.
   */
  readonly fetch = (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const method = (init.method ?? 'GET').toUpperCase();
    let retryable = method === 'GET';
    if (!retryable && typeof init.body === 'string') {
      try {
        const body = JSON.parse(init.body) as { query?: string; variables?: unknown };
        const mutation = /^\s*mutation\b/.test(body.query ?? '');
        retryable = !mutation || /commandId/.test(JSON.stringify(body.variables ?? {})) || /commandId\s*:/.test(body.query ?? '');
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

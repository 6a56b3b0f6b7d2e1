/**
 * React hooks over a `TwofoldClient` (`react` is an optional peer
 * dependency). Give the client with `<TwofoldProvider value={tf}>` or as
 * the hooks' `client` option.
 *
 *     const [placeOrder, { pending, visible, stalled, error }] = useCommand(PlaceOrderDocument);
 *     await placeOrder({ input });   // resolves once the order is visible
 *     // while it waits behind a stalled view: stalled = { view, waitingOn } ("waiting on the database")
 *
 *     const { visible, stalled, error } = useWriteVisible(token);
 *
 * A write that is not visible is reported in `error` as the TwofoldError
 * `tf.command` rejects with (`notVisibleError`): NOT_VISIBLE_YET when the
 * wait ran out, NOT_PROJECTED when an operator must act.
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState } from 'react';
import {
  notVisibleError,
  TwofoldError,
  type CommandOptions,
  type CommandResult,
  type Document,
  type NotVisibleReason,
  type ProjectionWait,
  type ResultOf,
  type Stall,
  type StallListener,
  type TwofoldClient,
  type VariablesOf,
} from './index.js';

export const TwofoldContext = createContext<TwofoldClient | null>(null);
export const TwofoldProvider = TwofoldContext.Provider;

function useClient(client: TwofoldClient | undefined): TwofoldClient {
  const fromContext = useContext(TwofoldContext);
  const found = client ?? fromContext;
  if (!found) throw new Error('no Twofold client: wrap the tree in <TwofoldProvider value={tf}> or pass { client }');
  return found;
}

function asTwofoldError(error: unknown): TwofoldError {
  return error instanceof TwofoldError
    ? error
    : new TwofoldError({ code: 'NETWORK', message: error instanceof Error ? error.message : String(error), cause: error });
}

export interface CommandState<Result> {
  /** Sent, and not yet visible (or failed). */
  pending: boolean;
  /** The last run's write is visible. */
  visible: boolean;
  /** While pending: the last stall the wait met (the view, and what it waits on); it may still clear. */
  stalled?: Stall;
  error: TwofoldError | null;
  data?: Result;
  token?: string;
}

/** The latest `value`, for callbacks that should not re-create what depends on them. */
function useLatest<T>(value: T): { readonly current: T } {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}

/**
 * `[run, state]`: `run(variables)` sends the command (see `TwofoldClient.command`)
 * and resolves with its result once visible; it rejects with the
 * `TwofoldError` that `state.error` also holds.
 */
export function useCommand<D extends Document>(
  document: D,
  options: CommandOptions & { client?: TwofoldClient } = {},
): [(variables: VariablesOf<D>) => Promise<CommandResult<ResultOf<D>>>, CommandState<ResultOf<D>>] {
  const tf = useClient(options.client);
  const [state, setState] = useState<CommandState<ResultOf<D>>>({ pending: false, visible: false, error: null });
  const mounted = useRef(true);
  const latest = useRef(0);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  const { until, timeoutMs, projections, operationName } = options;
  const listener = useLatest(options.onStalled);
  const run = useCallback(
    async (variables: VariablesOf<D>) => {
      const call = ++latest.current;
      const current = () => mounted.current && call === latest.current;
      setState({ pending: true, visible: false, error: null });
      const onStalled: StallListener = (stall) => {
        if (current()) setState((previous) => (previous.pending ? { ...previous, stalled: stall } : previous));
        listener.current?.(stall);
      };
      try {
        const result = await tf.command(document, variables, { until, timeoutMs, projections, operationName, onStalled });
        if (current()) setState({ pending: false, visible: result.visible, error: null, data: result.data, token: result.token });
        return result;
      } catch (cause) {
        const error = asTwofoldError(cause);
        if (current()) setState({ pending: false, visible: false, error, token: error.token });
        throw error;
      }
    },
    [tf, document, until, timeoutMs, projections, operationName, listener],
  );
  return [run, state];
}

export interface WriteVisibleState {
  /** `null` while waiting (or with no token). */
  visible: boolean | null;
  reason?: NotVisibleReason;
  blockedBy?: string;
  waitingOn?: ProjectionWait;
  /** While waiting: the last stall the wait met (the view, and what it waits on); it may still clear. */
  stalled?: Stall;
  /** Why the wait failed, or why the write is not visible (`notVisibleError`: NOT_VISIBLE_YET or NOT_PROJECTED). */
  error: TwofoldError | null;
}

/**
 * Whether the write `token` is visible yet; waits on `writeVisible` whenever
 * the token changes (see `TwofoldClient.awaitVisible`), and stops waiting
 * when the component unmounts or the token changes.
 */
export function useWriteVisible(
  token: string | null | undefined,
  options: { timeoutMs?: number; projections?: string[]; onStalled?: StallListener; client?: TwofoldClient } = {},
): WriteVisibleState {
  const tf = useClient(options.client);
  const [state, setState] = useState<WriteVisibleState>({ visible: null, error: null });
  const { timeoutMs } = options;
  const projections = options.projections?.join(',');
  const listener = useLatest(options.onStalled);
  useEffect(() => {
    setState({ visible: null, error: null });
    if (!token) return;
    const controller = new AbortController();
    const live = () => !controller.signal.aborted;
    const onStalled: StallListener = (stall) => {
      if (live()) setState((previous) => ({ ...previous, stalled: stall }));
      listener.current?.(stall);
    };
    tf.awaitVisible(token, { timeoutMs, projections: projections ? projections.split(',') : undefined, onStalled, signal: controller.signal }).then(
      (answer) => live() && setState({ ...answer, error: answer.visible ? null : notVisibleError(token, answer) }),
      (error) => live() && setState({ visible: null, error: asTwofoldError(error) }),
    );
    return () => controller.abort();
  }, [tf, token, timeoutMs, projections, listener]);
  return state;
}

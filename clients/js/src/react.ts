/**
 * React hooks over a `TwofoldClient` (`react` is an optional peer
 * dependency). Give the client with `<TwofoldProvider value={tf}>` or as
 * the hooks' `client` option.
 *
 *     const [placeOrder, { pending, visible, error }] = useCommand(PlaceOrderDocument);
 *     await placeOrder({ input });   // resolves once the order is visible
 *
 *     const { visible, reason } = useWriteVisible(token);
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState } from 'react';
import {
  TwofoldError,
  type CommandOptions,
  type CommandResult,
  type Document,
  type NotVisibleReason,
  type ResultOf,
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
  error: TwofoldError | null;
  data?: Result;
  token?: string;
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
  const run = useCallback(
    async (variables: VariablesOf<D>) => {
      const call = ++latest.current;
      const current = () => mounted.current && call === latest.current;
      setState({ pending: true, visible: false, error: null });
      try {
        const result = await tf.command(document, variables, { until, timeoutMs, projections, operationName });
        if (current()) setState({ pending: false, visible: result.visible, error: null, data: result.data, token: result.token });
        return result;
      } catch (cause) {
        const error = asTwofoldError(cause);
        if (current()) setState({ pending: false, visible: false, error, token: error.token });
        throw error;
      }
    },
    [tf, document, until, timeoutMs, projections, operationName],
  );
  return [run, state];
}

export interface WriteVisibleState {
  /** `null` while waiting (or with no token). */
  visible: boolean | null;
  reason?: NotVisibleReason;
  blockedBy?: string;
  error: TwofoldError | null;
}

/** Whether the write `token` is visible yet; waits on `writeVisible` whenever the token changes. */
export function useWriteVisible(
  token: string | null | undefined,
  options: { timeoutMs?: number; projections?: string[]; client?: TwofoldClient } = {},
): WriteVisibleState {
  const tf = useClient(options.client);
  const [state, setState] = useState<WriteVisibleState>({ visible: null, error: null });
  const { timeoutMs } = options;
  const projections = options.projections?.join(',');
  useEffect(() => {
    setState({ visible: null, error: null });
    if (!token) return;
    let live = true;
    tf.awaitVisible(token, { timeoutMs, projections: projections ? projections.split(',') : undefined }).then(
      (answer) => live && setState({ ...answer, error: null }),
      (error) => live && setState({ visible: null, error: asTwofoldError(error) }),
    );
    return () => {
      live = false;
    };
  }, [tf, token, timeoutMs, projections]);
  return state;
}

/**
 * `twofoldExchange(tf)` for urql. Put it before the cache exchange:
 *
 *     new Client({ url, fetch: tf.fetch, exchanges: [twofoldExchange(tf), cacheExchange, fetchExchange] })
 *
 * - A mutation gets a `commandId` in its `input` when it has none, so a
 *   retried mutation never acts twice.
 * - A mutation's result is held back until `writeVisible` says its write is
 *   visible (`tf.ensureVisible`: a stall is waited through and told to the
 *   client's `onStalled`; a write that is not visible in time, or will not
 *   be without an operator, comes back as the result's `networkError`, the
 *   TwofoldError `tf.command` would reject with).
 * - A mutation torn down meanwhile (its component unmounted, its promise
 *   settled) delivers nothing late: what is still pending for it, the
 *   preparation or the wait, ends at its teardown, as urql's own
 *   `mapExchange` does since @urql/core 6.0.2.
 * - Every query carries the session's token as `extensions.consistentWith`.
 *   urql's cache exchange refetches the queries a mutation invalidated the
 *   moment the result passes it, before this exchange releases it: those
 *   refetches wait on the server for the write, so the first refetch
 *   already shows it — on any instance.
 */
import { CombinedError, makeOperation, type Exchange, type Operation, type OperationResult } from '@urql/core';
import { filter, fromValue, make, map, merge, mergeMap, pipe, share, takeUntil, type Source } from 'wonka';
import { prepareCommand, tokenOf, type TwofoldClient } from './index.js';

/** A query that waits for the session's writes (`extensions.consistentWith`). */
function withSession(tf: TwofoldClient, operation: Operation): Operation {
  const consistentWith = tf.sessionToken;
  if (operation.kind !== 'query' || !consistentWith) return operation;
  return makeOperation(operation.kind, { ...operation, extensions: { ...operation.extensions, consistentWith } }, operation.context);
}

/**
 * One value from `run`, as a wonka source whose cancellation aborts the
 * work (`fromPromise` cannot): a wait ended by its operation's teardown
 * also ends its `writeVisible` subscription. `run` must not reject (wonka
 * sources carry no errors): both uses turn a failure into a value.
 */
function fromAbortable<T>(run: (signal: AbortSignal) => Promise<T>): Source<T> {
  return make<T>((observer) => {
    const controller = new AbortController();
    run(controller.signal).then((value) => {
      if (controller.signal.aborted) return;
      observer.next(value);
      observer.complete();
    });
    return () => controller.abort();
  });
}

export function twofoldExchange(tf: TwofoldClient): Exchange {
  return ({ forward }) =>
    (operations$) => {
      const shared$ = pipe(operations$, share);
      /** Emits once `key` is torn down: what is still pending for that operation ends there. */
      const teardownOf = (key: number) => pipe(shared$, filter((op) => op.kind === 'teardown' && op.key === key));
      const mutations$ = pipe(
        shared$,
        filter((op) => op.kind === 'mutation'),
        mergeMap((op) =>
          pipe(
            fromAbortable(() =>
              prepareCommand(op.query, op.variables as Record<string, unknown>).then(
                (prepared) => makeOperation(op.kind, { ...op, query: prepared.document, variables: prepared.variables }, op.context),
                // A document prepareCommand cannot read goes on as it is: the server says what is wrong with it.
                () => op,
              ),
            ),
            takeUntil(teardownOf(op.key)),
          ),
        ),
      );
      const others$ = pipe(
        shared$,
        filter((op) => op.kind !== 'mutation'),
        map((op) => withSession(tf, op)),
      );
      return pipe(
        forward(merge([mutations$, others$])),
        mergeMap((result: OperationResult) => {
          const token = result.operation.kind === 'mutation' && !result.error ? tokenOf(result.data) : null;
          if (!token) return fromValue(result);
          // Noted at once: the refetches the cache exchange is about to send carry it.
          tf.noteToken(token);
          return pipe(
            fromAbortable((signal) =>
              tf.ensureVisible(token, { signal, data: result.data }).then(
                (): OperationResult => result,
                (cause): OperationResult => ({ ...result, error: new CombinedError({ networkError: cause as Error }) }),
              ),
            ),
            takeUntil(teardownOf(result.operation.key)),
          );
        }),
      );
    };
}

/**
 * `twofoldExchange(tf)` for urql. Put it before the cache exchange:
 *
 *     new Client({ url, fetch: tf.fetch, exchanges: [twofoldExchange(tf), cacheExchange, fetchExchange] })
 *
 * - A mutation gets a `commandId` in its `input` when it has none, so a
 *   retried mutation never acts twice.
 * - A mutation's result is held back until `writeVisible` says its write is
 *   visible (a write that will not become visible comes back as an error).
 * - Every query carries the session's token as `extensions.consistentWith`.
 *   urql's cache exchange refetches the queries a mutation invalidated the
 *   moment the result passes it, before this exchange releases it: those
 *   refetches wait on the server for the write, so the first refetch
 *   already shows it — on any instance.
 */
import { CombinedError, makeOperation, type Exchange, type Operation, type OperationResult } from '@urql/core';
import { filter, fromPromise, fromValue, map, merge, mergeMap, pipe, share } from 'wonka';
import { prepareCommand, tokenOf, TwofoldError, type TwofoldClient } from './index.js';

/** A query that waits for the session's writes (`extensions.consistentWith`). */
function withSession(tf: TwofoldClient, operation: Operation): Operation {
  const consistentWith = tf.sessionToken;
  if (operation.kind !== 'query' || !consistentWith) return operation;
  return makeOperation(operation.kind, { ...operation, extensions: { ...operation.extensions, consistentWith } }, operation.context);
}

export function twofoldExchange(tf: TwofoldClient): Exchange {
  return ({ forward }) =>
    (operations$) => {
      const shared$ = pipe(operations$, share);
      const mutations$ = pipe(
        shared$,
        filter((op) => op.kind === 'mutation'),
        mergeMap((op) =>
          fromPromise(
            prepareCommand(op.query, op.variables as Record<string, unknown>).then(
              (prepared) => makeOperation(op.kind, { ...op, query: prepared.document, variables: prepared.variables }, op.context),
              () => op,
            ),
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
          return fromPromise(
            tf.awaitVisible(token).then(
              (visibility): OperationResult => {
                if (visibility.visible) return result;
                const error = new TwofoldError({
                  code: visibility.reason === 'TIMED_OUT' ? 'NOT_VISIBLE_YET' : 'NOT_PROJECTED',
                  message: `the write ${token} is not visible: ${visibility.reason}${visibility.blockedBy ? ` in ${visibility.blockedBy}` : ''}`,
                  reason: visibility.reason,
                  blockedBy: visibility.blockedBy,
                  token,
                });
                return { ...result, error: new CombinedError({ networkError: error }) };
              },
              (cause): OperationResult => ({ ...result, error: new CombinedError({ networkError: cause as Error }) }),
            ),
          );
        }),
      );
    };
}

/**
 * `TwofoldLink` for Apollo Client 3: put it in the link chain before the
 * terminating `HttpLink`:
 *
 *     new ApolloClient({ cache, link: from([new TwofoldLink(tf), new HttpLink({ uri, fetch: tf.fetch })]) })
 *
 * - A mutation gets a `commandId` in its `input` when it has none.
 * - A mutation's result is held back until `writeVisible` says its write is
 *   visible, so `refetchQueries` (which run once the result is delivered)
 *   read data that holds the write; a write that will not become visible
 *   is an error carrying the reason.
 * - Every query carries the session's token as `extensions.consistentWith`
 *   (the link turns on `includeExtensions` for it), so queries sent to
 *   another instance wait there for the write too.
 */
import { ApolloLink, Observable, type FetchResult, type NextLink, type Operation } from '@apollo/client/core/index.js';
import { getMainDefinition } from '@apollo/client/utilities/index.js';
import { prepareCommand, tokenOf, TwofoldError, type TwofoldClient } from './index.js';

export class TwofoldLink extends ApolloLink {
  constructor(private readonly tf: TwofoldClient) {
    super();
  }

  override request(operation: Operation, forward: NextLink): Observable<FetchResult> | null {
    const definition = getMainDefinition(operation.query);
    const kind = definition.kind === 'OperationDefinition' ? definition.operation : 'query';
    if (kind === 'query') {
      const consistentWith = this.tf.sessionToken;
      if (consistentWith) {
        operation.extensions = { ...operation.extensions, consistentWith };
        operation.setContext((previous: { http?: Record<string, unknown> }) => ({
          http: { ...previous.http, includeExtensions: true },
        }));
      }
      return forward(operation);
    }
    if (kind !== 'mutation') return forward(operation);
    const tf = this.tf;
    return new Observable<FetchResult>((observer) => {
      let subscription: { unsubscribe(): void } | undefined;
      let closed = false;
      prepareCommand(operation.query, operation.variables).then(
        (prepared) => {
          if (closed) return;
          operation.query = prepared.document;
          operation.variables = prepared.variables;
          let held: Promise<void> = Promise.resolve();
          subscription = forward(operation).subscribe({
            next: (result) => {
              const token = result.errors?.length ? null : tokenOf(result.data);
              if (!token) {
                observer.next(result);
                return;
              }
              tf.noteToken(token);
              held = tf.awaitVisible(token).then((visibility) => {
                if (visibility.visible) {
                  observer.next(result);
                  return;
                }
                observer.error(
                  new TwofoldError({
                    code: visibility.reason === 'TIMED_OUT' ? 'NOT_VISIBLE_YET' : 'NOT_PROJECTED',
                    message: `the write ${token} is not visible: ${visibility.reason}${visibility.blockedBy ? ` in ${visibility.blockedBy}` : ''}`,
                    reason: visibility.reason,
                    blockedBy: visibility.blockedBy,
                    token,
                    data: result.data,
                  }),
                );
              }, (cause) => observer.error(cause));
            },
            error: (error) => observer.error(error),
            complete: () => {
              void held.then(() => observer.complete());
            },
          });
        },
        (error) => observer.error(error),
      );
      return () => {
        closed = true;
        subscription?.unsubscribe();
      };
    });
  }
}

// Typed end to end: the documents come from graphql-codegen (codegen.mjs over
// the server's schema.graphql), so `data` and `variables` are checked.
//   npx tsx examples/place-order.ts http://127.0.0.1:8000/graphql CUSTOMER-ID PRODUCT-ID
import WebSocket from 'ws';
import { createClient, TwofoldError } from '../src/index.js';
import { OrderDocument, PlaceOrderDocument, CancelOrderDocument } from './generated/graphql.js';

const [url = 'http://127.0.0.1:8000/graphql', customerId = '', productId = ''] = process.argv.slice(2);
const tf = createClient({ url, webSocketImpl: WebSocket });
try {
  // `input` is a PlaceOrderInput; a missing or misspelt field does not compile.
  const placed = await tf.command(PlaceOrderDocument, { input: { customerId, lines: [{ productId, quantity: 1 }] } });
  const id: string = placed.data.placeOrder.id;
  // Session read-your-writes: the order is there.
  const { data } = await tf.query(OrderDocument, { id });
  const cents: number | undefined = data.order?.totalCents;
  console.log(`order ${id}: ${data.order?.status}, ${cents} cents`);
  // cancelOrder answers Accepted: a token, no id.
  const cancelled = await tf.command(CancelOrderDocument, { input: { orderId: id, reason: 'changed my mind' } }, { until: 'accepted' });
  console.log(`cancelled at ${cancelled.data.cancelOrder.token}`);
} catch (e) {
  if (e instanceof TwofoldError) console.error(e.code, e.message, e.reason ?? '', e.blockedBy ?? '');
  else throw e;
} finally {
  tf.dispose();
}

// Typed end to end: the documents' result and variable types come with them.
import WebSocket from 'ws';
import { createClient, TwofoldError, type TypedDocumentNode } from '../src/index.js';
import { parse } from 'graphql';

type PlaceOrder = { placeOrder: { id: string; token: string } };
type PlaceOrderVariables = { input: { customerId: string; lines: { productId: string; quantity: number }[]; commandId?: string } };
const PlaceOrderDocument = parse(
  'mutation PlaceOrder($input: PlaceOrderInput!) { placeOrder(input: $input) { id token } }',
) as TypedDocumentNode<PlaceOrder, PlaceOrderVariables>;

const tf = createClient({ url: 'http://127.0.0.1:8000/graphql', webSocketImpl: WebSocket });
try {
  const placed = await tf.command(PlaceOrderDocument, { input: { customerId: 'c', lines: [{ productId: 'p', quantity: 1 }] } });
  const id: string = placed.data.placeOrder.id;
  console.log(`order ${id} is visible`);
} catch (e) {
  if (e instanceof TwofoldError) console.error(e.code, e.reason, e.blockedBy);
} finally {
  tf.dispose();
}

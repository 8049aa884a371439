"""A grpc.aio server whose SendMessage does nothing: the benchmark baseline."""

from __future__ import annotations

import asyncio
import sys

import grpc
from parley.v1 import conversation_pb2, conversation_pb2_grpc


class EmptyConversations(conversation_pb2_grpc.ConversationServiceServicer):
    async def SendMessage(
        self,
        request: conversation_pb2.SendMessageRequest,
        context: grpc.aio.ServicerContext[
            conversation_pb2.SendMessageRequest, conversation_pb2.SendMessageResponse
        ],
    ) -> conversation_pb2.SendMessageResponse:
        return conversation_pb2.SendMessageResponse()


async def serve() -> None:
    server = grpc.aio.server()
    conversation_pb2_grpc.add_ConversationServiceServicer_to_server(
        EmptyConversations(), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)

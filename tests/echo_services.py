"""Tiny EnvService and WeightService servicers for transport tests (the shared server helper, security).

The real services have their own tests; these only answer, so a test sees what the transport does.
"""
from atlasrl.rpc import InvalidArgument, MalformedRequest, to_status_msg
from atlasrl.v1 import env_pb2, weights_pb2

ENV = env_pb2.DESCRIPTOR.services_by_name["EnvService"]
WEIGHTS = weights_pb2.DESCRIPTOR.services_by_name["WeightService"]


class EchoEnv:
    """Minimal EnvService: ListEnvs echoes, Session answers each request (errors per request); counts live sessions."""

    def __init__(self):
        self.live = 0

    async def ListEnvs(self, request, context):
        return env_pb2.ListEnvsResponse(envs=[env_pb2.EnvSpec(env_id="echo")])

    async def Session(self, requests, context):
        self.live += 1
        try:
            while True:
                try:
                    req = await requests.__anext__()
                except StopAsyncIteration:
                    return
                except MalformedRequest as e:
                    yield env_pb2.EnvResponse(status=to_status_msg(e))
                    continue
                if req.WhichOneof("payload") == "close":     # an exception from the handler: the stream ends with its status
                    raise InvalidArgument("close is not supported by the echo servicer")
                yield env_pb2.EnvResponse(request_id=req.request_id, status=to_status_msg())
        finally:
            self.live -= 1


class CountingWeights:
    """Minimal WeightService: counts published updates."""

    def __init__(self):
        self.published = 0

    async def Subscribe(self, request, context):
        yield weights_pb2.WeightUpdate()

    async def Publish(self, requests, context):
        async for _ in requests:
            self.published += 1
        return weights_pb2.PublishAck()

    async def GetLatest(self, request, context):
        return weights_pb2.WeightManifest()

    async def Negotiate(self, request, context):
        return weights_pb2.NegotiateReply(offered=[weights_pb2.WEIGHT_TRANSPORT_STREAM])

"""Weight transfer from the learner to actors: one ``WeightTransport`` interface, three implementations.

- ``stream``: full tensors in CRC-checked 1-4 MiB parts on the WeightService.Subscribe gRPC stream.
- ``delta``: the same stream, each version as its element-wise difference from the previous one (a 2-bit code
  per element, atlasrl/weight_diff.py) + zstd-1 when the subscriber holds it; a full resync on a checksum mismatch or a missed version.
- ``collective``: versions announced on the stream, bytes broadcast from the learner over a dedicated
  torch.distributed group (gloo on CPU, NCCL on GPU) built on a TCPStore the learner advertises in Negotiate.

Modules: ``transport.py`` (the interface, the subscriber side of each, negotiation), ``collective.py`` (the
weight group: learner hub and member). The wire format is atlasrl/weight_codec.py; the learner's side of the
stream and delta transports is atlasrl/learner/weight_service.py; the subscriber is
atlasrl/clients/weights.py (``WeightSubscriber``).
"""

"""Generated code for the `medswitch.v1` contract (proto/switch/proto/*.proto).

Never edit the *_pb2* modules by hand: run `python -m switch.protogen`.
"""

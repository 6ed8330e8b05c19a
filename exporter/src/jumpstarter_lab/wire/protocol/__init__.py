"""Generated jumpstarter.v1 / jumpstarter.client.v1 protocol modules, under one import path."""

from .jumpstarter.client.v1 import client_pb2, client_pb2_grpc
from .jumpstarter.v1 import (
    common_pb2,
    jumpstarter_pb2,
    jumpstarter_pb2_grpc,
    kubernetes_pb2,
    router_pb2,
    router_pb2_grpc,
)

__all__ = [
    "client_pb2",
    "client_pb2_grpc",
    "common_pb2",
    "jumpstarter_pb2",
    "jumpstarter_pb2_grpc",
    "kubernetes_pb2",
    "router_pb2",
    "router_pb2_grpc",
]

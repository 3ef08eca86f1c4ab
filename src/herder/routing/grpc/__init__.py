"""herder.routing.grpc"""

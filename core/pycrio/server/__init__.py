"""gRPC servicers and the servers around them."""

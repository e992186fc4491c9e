"""What the tests share: servers, outside services, and clients of every protocol."""

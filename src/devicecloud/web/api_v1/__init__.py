"""devicecloud's own API under `/api/v1/`: Bearer `open_api_key` auth, problem+json errors,
cursor paging, devices named by their public id, and their fields."""

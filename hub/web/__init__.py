"""The operators' view: a read model over the hub's topics (``model``), the Kafka feed that fills
it (``feed``), the JSON API with its OpenAPI document and the server-rendered pages (``server``)."""

"""The JSON Schemas (Draft 2020-12) of a cloud repository's files: cloud.yaml,
services/*.yaml, rules.yaml. Package data, so a wheel ships them; read them with
validators.schema.schema(kind), which goes through importlib.resources."""

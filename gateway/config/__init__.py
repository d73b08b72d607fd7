"""Loading and checking the operator's YAML: config/, providers.d/, pricing.d/."""

from gateway.config.load import ConfigError, load_config
from gateway.config.model import Config

__all__ = ["Config", "ConfigError", "load_config"]

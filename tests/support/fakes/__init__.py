"""Test doubles for the upstream providers (OpenAI/xAI, Anthropic, Gemini).

* ``tests.support.fakes.specs``    - validate payloads against the official API specs
* ``tests.support.fakes.server``   - ``FakeUpstream`` / ``start_fake``: real loopback HTTP servers
* ``tests.support.fakes.fixtures`` - pytest fixtures ``fake_openai``, ``fake_anthropic``, ``fake_gemini``,
  ``fake_xai``
* ``tests.support.fakes.*_wire``   - the fakes' default answers / stream conversion as pure functions
"""

from .server import FakeUpstream, Recorded, start_fake
from .specs import assert_valid, check, validate

__all__ = ["FakeUpstream", "Recorded", "start_fake", "validate", "check", "assert_valid"]

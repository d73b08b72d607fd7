"""Uploads (multipart/form-data): read once into one buffer, parsed as the pieces arrive, forwarded as they came.

The body is bounded before it costs anything: its size (`server.max_upload_bytes`, 25 MB like OpenAI: more →
413), the number of parts, the size of each text field and of each part's headers (→ 400). python-multipart's
streaming parser sees every piece as it arrives (a 64 KiB piece costs tens of microseconds, so a large upload
never holds the event loop) and reports where each file lies in the buffer: files are never copied, and a
pass-through forwards the very buffer it read (only a renamed model splices a new one, once).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.http.asgi import ClientGone, Receive, Scope, declared_length, header

MAX_PARTS = 64                 # OpenAI's forms have ≤ 20 parts (16 images + mask + fields)
MAX_FIELD_BYTES = 128 * 1024   # a text field (a prompt of 32,000 characters fits)
MAX_PART_HEADER_BYTES = 4096
# audio length of an upload whose format the gateway does not read: bounded for the reservation at 16 kbit/s
# (the lowest bitrate speech is sent at), estimated for a charge the provider does not report at 128 kbit/s
BOUND_BYTES_PER_S = 2_000
ESTIMATE_BYTES_PER_S = 16_000


@dataclass(slots=True)
class FilePart:
    name: str
    filename: str
    content_type: str
    start: int                 # offsets of its bytes in Form.raw
    end: int


@dataclass(slots=True)
class Form:
    raw: bytes | bytearray
    content_type: str          # the client's, boundary included: the body is forwarded as it came
    fields: dict[str, Any]     # text fields; `name[]` → a list under `name`; `stream` → a bool
    files: list[FilePart] = field(default_factory=list)
    text_bytes: int = 0        # bytes of every text field (a bound on their tokens)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)   # where each text field's value lies

    def file(self, name: str) -> FilePart | None:
        return next((f for f in self.files if f.name == name), None)

    def data(self, part: FilePart) -> memoryview:
        return memoryview(self.raw)[part.start:part.end]

    def with_field(self, name: str, value: str) -> bytes:
        """The body with one text field's value replaced (a model the provider knows by another name)."""
        start, end = self.spans[name]
        return b"".join((memoryview(self.raw)[:start], value.encode(), memoryview(self.raw)[end:]))

    def audio_ms(self, name: str = "file") -> tuple[int, int]:
        """(bound, estimate) of the audio length of file part `name`: exact for PCM WAV (its header says),
        else from its size at a low and at a typical bitrate."""
        part = self.file(name)
        if part is None:
            return 0, 0
        exact = wav_ms(self.data(part)[:4096], part.end - part.start)
        if exact:
            return exact, exact
        size = part.end - part.start
        return -(-size * 1000 // BOUND_BYTES_PER_S), -(-size * 1000 // ESTIMATE_BYTES_PER_S)


def wav_ms(head: memoryview | bytes, size: int) -> int:
    """Milliseconds of a RIFF/WAVE file from its header (0 when it is not one)."""
    head = bytes(head)
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        kind, chunk = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if kind == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]   # after format, channels, sample rate
        elif kind == b"data":
            data = min(chunk, size - pos - 8)
            return -(-data * 1000 // byte_rate) if byte_rate else 0
        pos += 8 + chunk + (chunk & 1)
    return 0


AUDIO_TYPES = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")


def check_audio_file(part: FilePart | None) -> None:
    """400 unless the form carries an audio file in a format OpenAI's transcription takes (by its name's
    extension, or its declared type when the name has none)."""
    if part is None:
        raise BadRequest("'file' is required: the audio to transcribe, as a file part of the form")
    if part.end <= part.start:
        raise BadRequest("'file' is empty")
    ext = part.filename.rsplit(".", 1)[-1].lower() if "." in part.filename else ""
    subtype = part.content_type.split(";")[0].strip().lower()
    kind, _, sub = subtype.partition("/")
    if ext in AUDIO_TYPES or (not ext and kind in ("audio", "video") and sub.removeprefix("x-") in AUDIO_TYPES):
        return
    raise BadRequest(f"unsupported file format '{ext or subtype}': send one of {', '.join(AUDIO_TYPES)}")


IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
MAX_INPUT_IMAGES = 16


def check_image_files(form: Form, need: str) -> list[FilePart]:
    """The images of an edit (`image` or `image[]`, 1 to 16) or a variation (one `image`), each PNG, JPEG or WebP;
    400 otherwise. `need`: the endpoint's name."""
    images = [f for f in form.files if f.name in ("image", "image[]")]
    if not images:
        raise BadRequest("'image' is required: the image(s) to edit, as file parts of the form")
    if len(images) > (1 if need == "image_variation" else MAX_INPUT_IMAGES):
        raise BadRequest(f"too many images: at most {1 if need == 'image_variation' else MAX_INPUT_IMAGES}")
    for part in images + [f for f in form.files if f.name == "mask"]:
        if part.end <= part.start:
            raise BadRequest(f"'{part.name}' is empty")
        image_type(part)
    return images


def image_type(part: FilePart) -> str:
    """The MIME type of an image part, from its declared type or its name; 400 unless PNG, JPEG or WebP."""
    declared = part.content_type.split(";")[0].strip().lower()
    if declared in IMAGE_TYPES.values():
        return declared
    ext = part.filename.rsplit(".", 1)[-1].lower() if "." in part.filename else ""
    if ext in IMAGE_TYPES:
        return IMAGE_TYPES[ext]
    raise BadRequest(f"unsupported image type '{declared or ext}' for '{part.name}': send PNG, JPEG or WebP")


def form_document(form: Form) -> dict[str, Any]:
    """The form as a document for a wire template: its text fields, and each file part as
    {mime_type, data (base64), filename} under its name (`image[]` → a list under `image`)."""
    doc: dict[str, Any] = dict(form.fields)
    for part in form.files:
        item = {"mime_type": image_type(part) if part.name in ("image", "image[]", "mask") else part.content_type,
                "data": base64.b64encode(form.data(part)).decode("ascii"), "filename": part.filename}
        if part.name == "image" or part.name == "image[]":
            doc.setdefault("image", []).append(item)
        else:
            doc[part.name] = item
    return doc


class _Collector:
    """python-multipart callbacks: part headers, text fields (bounded) and the place of every file."""

    def __init__(self) -> None:
        self.base = 0                                  # offset of the piece being parsed in the whole body
        self.fields: dict[str, Any] = {}
        self.spans: dict[str, tuple[int, int]] = {}
        self.files: list[FilePart] = []
        self.parts = 0
        self.text_bytes = 0
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._header_bytes = 0
        self._name = ""
        self._file: FilePart | None = None
        self._text = bytearray()
        self.chunk: bytes = b""                        # the piece being parsed
        self._count = 0                                # data bytes of the current part so far
        self._start = -1                               # offset of its first byte, once known

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadRequest(f"too many parts in the form: at most {MAX_PARTS}")
        self._headers, self._header_bytes, self._file, self._text = {}, 0, None, bytearray()
        self._count, self._start = 0, -1

    def _grow_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise BadRequest(f"a form part's headers exceed {MAX_PART_HEADER_BYTES} bytes")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(end - start)
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname, self._hvalue = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if kind != b"form-data" or not name:
            raise BadRequest("every form part needs 'Content-Disposition: form-data; name=...'")
        self._name = name.decode("utf-8", "replace")
        if b"filename" in options:
            self._file = FilePart(self._name, options[b"filename"].decode("utf-8", "replace"),
                                  self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1"),
                                  -1, -1)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        # A part's bytes are contiguous in the body: its first offset follows from any byte of the piece being
        # parsed (the parser may also hand back, from its own buffer, bytes it held while they looked like
        # the start of a boundary: those are counted, not located).
        if self._start < 0 and data is self.chunk:
            self._start = self.base + start - self._count
        if self._file is None:
            if len(self._text) + end - start > MAX_FIELD_BYTES:
                raise BadRequest(f"form field '{self._name}' exceeds {MAX_FIELD_BYTES} bytes")
            self._text += data[start:end]
        self._count += end - start

    def _part_end(self) -> None:
        start = self._start if self._start >= 0 else max(self.base - self._count, 0)
        stop = start + self._count
        if self._file is not None:
            self._file.start, self._file.end = start, stop
            self.files.append(self._file)
            return
        try:
            value = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"form field '{self._name}' is not UTF-8 text") from None
        self.text_bytes += len(self._text)
        name = self._name
        if name.endswith("[]"):
            self.fields.setdefault(name[:-2], []).append(value)
            return
        self.spans[name] = (start, stop)
        self.fields[name] = value

    def _end(self) -> None:
        self.ended = True


async def read_form(scope: Scope, receive: Receive, limit: int) -> Form:
    """The whole multipart body, parsed while it arrives; 400 for anything but a well-formed form within
    the part limits, 413 past `limit` bytes (refused from the declared length before reading when it says so)."""
    ctype = (header(scope, b"content-type") or b"").decode("latin-1")
    kind, options = parse_options_header(ctype)
    if kind != b"multipart/form-data":
        raise BadRequest("this endpoint takes an upload: send Content-Type multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise BadRequest("the multipart/form-data Content-Type has no (or an over-long) boundary")
    length = declared_length(scope, limit, "upload")
    collector = _Collector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]  # the documented callback names
    buf = bytearray(length) if length >= 0 else bytearray()
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        end = size + len(chunk)
        if end > limit:
            raise PayloadTooLarge(f"upload exceeds the {limit} byte limit")
        if length >= 0:
            buf[size:end] = chunk
        else:
            buf += chunk
        collector.base, collector.chunk = size, chunk
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"malformed multipart/form-data body: {exc}") from None
        size = end
    if not collector.ended:
        raise BadRequest("malformed multipart/form-data body: it ends before its closing boundary")
    fields = collector.fields
    if "stream" in fields:
        fields["stream"] = fields["stream"].strip().lower() == "true"
    numbers: tuple[tuple[str, type[int] | type[float]], ...] = (
        ("temperature", float), ("n", int), ("output_compression", int), ("partial_images", int))
    for key, convert in numbers:
        if key in fields:
            try:
                fields[key] = convert(fields[key])
            except ValueError:
                raise BadRequest(f"'{key}' must be a number") from None
    return Form(buf, ctype, fields, collector.files, collector.text_bytes, collector.spans)

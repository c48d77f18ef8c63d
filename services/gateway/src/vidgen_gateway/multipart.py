"""Reading one file field of a multipart body as it streams in, within a byte budget.

The body is parsed chunk by chunk (python-multipart's streaming parser); reading stops as soon
as the file exceeds its budget, so an oversized upload is refused (413) after at most one
chunk more than the limit has been received, and nothing is spooled to disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from vidgen_gateway.errors import PayloadTooLarge, Unprocessable, UnsupportedImage

OTHER_FIELDS_BUDGET = 64 * 1024


@dataclass
class FilePart:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    def __init__(self, wanted: str, max_bytes: int) -> None:
        self.wanted = wanted
        self.max_bytes = max_bytes
        self.part = _Part()
        self.found: FilePart | None = None
        self.other_bytes = 0
        self.too_large = False
        self._header_name = b""
        self._header_value = b""

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        self.part.name = name.decode("utf-8", "replace") if name is not None else None
        filename = options.get(b"filename")
        self.part.filename = filename.decode("utf-8", "replace") if filename is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self.part.name == self.wanted and self.found is None:
            if len(self.part.data) + size > self.max_bytes:
                self.too_large = True
                return
            self.part.data += data[start:end]
        else:
            self.other_bytes += size
            if self.other_bytes > OTHER_FIELDS_BUDGET:
                self.too_large = True

    def on_part_end(self) -> None:
        if self.part.name == self.wanted and self.found is None:
            ctype = self.part.headers.get(b"content-type")
            self.found = FilePart(
                self.part.filename,
                ctype.decode("latin-1") if ctype is not None else None,
                bytes(self.part.data),
            )


async def read_file_field(
    headers: Mapping[str, str], body: AsyncIterator[bytes], name: str, max_bytes: int
) -> FilePart:
    """The field ``name`` of a ``multipart/form-data`` body of at most ``max_bytes`` bytes."""
    content_type = headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedImage(
            f"Send the image as multipart/form-data in the field '{name}'.",
            code="multipart_required",
        )
    declared = headers.get("content-length")
    budget = max_bytes + OTHER_FIELDS_BUDGET
    if declared is not None and declared.isdigit() and int(declared) > budget:
        raise _too_large(max_bytes)
    collector = _Collector(name, max_bytes)
    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
            if collector.too_large:
                raise _too_large(max_bytes)
        parser.finalize()
    except FormParserError as exc:
        raise Unprocessable("The multipart body is malformed.", code="invalid_multipart") from exc
    if collector.found is None:
        raise Unprocessable(
            f"The image must be sent in the multipart field '{name}'.",
            details={"field": name},
        )
    return collector.found


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The image is larger than {max_bytes} bytes.", details={"maxBytes": max_bytes}
    )

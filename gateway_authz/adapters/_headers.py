"""What adapters read of a request: its head, and its headers as the request model holds them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar, overload

from multidict import CIMultiDictProxy

from ..core.model import AuthzRequest

__all__ = ["Adapter", "HeaderView", "RequestHead"]

_T = TypeVar("_T")


class RequestHead(Protocol):
    """A request's method, raw path and headers: aiohttp's ``BaseRequest``, or a head the listener answers inline."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...


class HeaderView(Mapping[str, tuple[str, ...]]):
    """A read-only view of a request's headers with the shape of :func:`~gateway_authz.core.model.headers_from_pairs`.

    The decision reads a handful of headers (the credential carriers, a few forwarded fields) out of the dozen or
    so a gateway sends; grouping all of them into a new map on every request was a visible share of the
    decision path. The view asks aiohttp's case-insensitive multidict for just the names that are read. Names
    must be given in lower case, as the request model's readers do.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: CIMultiDictProxy[str]) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> tuple[str, ...]:
        values = self._headers.getall(name, ())
        if not values:
            raise KeyError(name)
        return tuple(values)

    @overload
    def get(self, name: str, /) -> tuple[str, ...] | None: ...
    @overload
    def get(self, name: str, /, default: tuple[str, ...]) -> tuple[str, ...]: ...
    @overload
    def get(self, name: str, /, default: _T) -> tuple[str, ...] | _T: ...

    def get(self, name: str, /, default: object = None) -> object:
        values = self._headers.getall(name, ())
        return tuple(values) if values else default

    def single(self, name: str) -> str:
        """The one value of ``name``, or ``""`` when it is absent or repeated (which then fails closed downstream)."""
        values = self._headers.getall(name, ())
        return values[0] if len(values) == 1 else ""

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.lower() for name in self._headers))

    def __len__(self) -> int:
        return len({name.lower() for name in self._headers})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._headers


# What every HTTP adapter is: the head of a gateway's check request in, the one request model out.
Adapter = Callable[[RequestHead], AuthzRequest]

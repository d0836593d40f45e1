"""Enrich stage, geolocation: a public address -> (country, latitude, longitude).

Read from a MaxMind-format (mmdb) city database: by default the GeoLite2-City database the
``maxminddb-geolite2`` package ships (offline, but from July 2018: addresses allocated since then
are not in it), or any GeoLite2-City, DB-IP or IPinfo city mmdb given with ``--geoip-db PATH``.
Private, loopback, link-local and other non-global addresses are never looked up. Lookups are
cached per address (``CACHE_SIZE``; a hit is a dict lookup, a miss ~8 µs).

``GeoIP.info()`` says which database answers, how old it is and whose data it is (shown by
``GET /api/geoip`` and the UI).
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

from .addresses import parse

CACHE_SIZE = 200_000
ATTRIBUTION = {
    "GeoLite2": "This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com",
    "DBIP": "IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0",
    "ipinfo": "IP address data powered by IPinfo (https://ipinfo.io)",
}


class GeoIPError(OSError):
    """The database cannot be opened or is not a city database; the message says which file."""


def bundled_database() -> Path:
    """The GeoLite2-City.mmdb of the maxminddb-geolite2 package."""
    import importlib.util
    spec = importlib.util.find_spec("_maxminddb_geolite2")
    if spec is None or not spec.submodule_search_locations:
        raise GeoIPError("no GeoIP database: install maxminddb-geolite2 or give --geoip-db PATH")
    return Path(list(spec.submodule_search_locations)[0]) / "GeoLite2-City.mmdb"


def is_public(ip: str) -> bool:
    """True for a global unicast address (what a geolocation database can place)."""
    a = parse(ip)
    return a is not None and a.is_global and not a.is_multicast


class GeoIP:
    """A city database and a per-address cache of its answers."""

    def __init__(self, path: str | Path | None = None, cache_size: int = CACHE_SIZE):
        import maxminddb
        self.path = Path(path) if path else bundled_database()
        try:
            self._reader = maxminddb.open_database(str(self.path), maxminddb.MODE_MMAP_EXT)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
            raise GeoIPError(f"cannot open the GeoIP database {self.path}: {e}") from None
        self.metadata = self._reader.metadata()
        if "city" not in self.metadata.database_type.lower() and "location" not in self.metadata.database_type.lower():
            raise GeoIPError(f"{self.path} is a {self.metadata.database_type} database, not a city database "
                             f"(GeoLite2-City, DB-IP City Lite, IPinfo location)")
        self.cache_size = cache_size
        self._cache: dict[str, tuple[str, float | None, float | None] | None] = {}
        self._lock = threading.Lock()
        self.lookups = self.hits = 0

    def lookup(self, ip: str) -> tuple[str, float | None, float | None] | None:
        """(country name in English, latitude, longitude) of a public address; None when the
        address is not public or the database does not know it."""
        hit = self._cache.get(ip, self)
        if hit is not self:
            self.hits += 1
            return hit
        self.lookups += 1
        found = self._find(ip) if is_public(ip) else None
        with self._lock:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[ip] = found
        return found

    def _find(self, ip: str) -> tuple[str, float | None, float | None] | None:
        try:
            rec = self._reader.get(ip)
        except ValueError:
            return None
        if not rec:
            return None
        country = rec.get("country") or rec.get("registered_country") or {}
        name = (country.get("names") or {}).get("en", "") if isinstance(country, dict) else ""
        if not name and isinstance(rec.get("country_name"), str):     # IPinfo / flat layouts
            name = rec["country_name"]
        loc = rec.get("location") or {}
        lat, lon = loc.get("latitude", rec.get("latitude")), loc.get("longitude", rec.get("longitude"))
        lat = float(lat) if lat not in (None, "") else None
        lon = float(lon) if lon not in (None, "") else None
        if not name and lat is None:
            return None
        return name, lat, lon

    def info(self) -> dict:
        built = datetime.fromtimestamp(self.metadata.build_epoch, timezone.utc)
        kind = self.metadata.database_type
        attribution = next((text for key, text in ATTRIBUTION.items() if key.lower() in kind.lower()), "")
        return {"path": str(self.path), "databaseType": kind, "built": built.strftime("%Y-%m-%d"),
                "ageDays": (datetime.now(timezone.utc) - built).days, "attribution": attribution,
                "bundled": self._bundled_known() and self.path == bundled_database(),
                "cachedAddresses": len(self._cache), "lookups": self.lookups, "cacheHits": self.hits}

    @staticmethod
    def _bundled_known() -> bool:
        try:
            bundled_database()
            return True
        except GeoIPError:
            return False

    def close(self) -> None:
        self._reader.close()

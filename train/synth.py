"""Deterministic sample trips in the NYC TLC green (or yellow) trip schema.

The real files cannot be downloaded on every machine, so the project ships a
generator whose output has the real column names and dtypes and enough
structure for a model to learn: zones sit on a map so distance follows
geography, speed depends on the hour and the weekday, and the outliers real
files have (zero distances, negative or very long durations) are present.
Same seed and size -> same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_ZONES = 265  # TLC taxi zones are numbered 1..265 (264/265 are "unknown").
DEFAULT_ROWS = 250_000
DEFAULT_SEED = 2021
DEFAULT_MONTH = "2021-01"

# The real green schema (2021 files), column order included.
GREEN_SCHEMA = pa.schema(
    [
        ("VendorID", pa.int64()),
        ("lpep_pickup_datetime", pa.timestamp("us")),
        ("lpep_dropoff_datetime", pa.timestamp("us")),
        ("store_and_fwd_flag", pa.string()),
        ("RatecodeID", pa.float64()),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("ehail_fee", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("payment_type", pa.float64()),
        ("trip_type", pa.float64()),
        ("congestion_surcharge", pa.float64()),
    ]
)

# The real yellow schema (2023 files): tpep_ clocks, no ehail_fee or
# trip_type, an airport_fee, an integer payment_type.
YELLOW_SCHEMA = pa.schema(
    [
        ("VendorID", pa.int64()),
        ("tpep_pickup_datetime", pa.timestamp("us")),
        ("tpep_dropoff_datetime", pa.timestamp("us")),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("RatecodeID", pa.float64()),
        ("store_and_fwd_flag", pa.string()),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("payment_type", pa.int64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("congestion_surcharge", pa.float64()),
        ("airport_fee", pa.float64()),
    ]
)
SCHEMAS = {"green": GREEN_SCHEMA, "yellow": YELLOW_SCHEMA}

# Mean speed (mph) by hour of day: slow in the rush hours, fast at night.
_SPEED_BY_HOUR = np.array(
    [19, 20, 21, 21, 20, 18, 15, 12, 10, 11, 12, 12,
     12, 12, 12, 11, 10, 9.5, 10, 12, 14, 15, 16, 18],
    dtype=np.float64,
)
# How many trips start in each hour (relative).
_TRIPS_BY_HOUR = np.array(
    [3, 2, 1.5, 1, 1, 1.5, 3, 5, 6, 5.5, 5, 5,
     5.5, 5.5, 6, 6.5, 7, 7.5, 7, 6.5, 6, 5.5, 5, 4],
    dtype=np.float64,
)


# How much more (or less) riders tip by hour of day, on the logit scale:
# generous late at night, stingy at midday.
_TIP_BY_HOUR = np.array(
    [1.2, 1.4, 1.4, 1.2, 0.8, 0.3, 0.1, 0.3, 0.4, 0.0, -0.5, -0.8,
     -1.0, -0.8, -0.6, -0.3, 0.0, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0],
    dtype=np.float64,
)


def tip_probability(pickup_position: np.ndarray, hour: np.ndarray, weekday: np.ndarray,
                    distance: np.ndarray) -> np.ndarray:
    """The chance that a card payment includes a tip, for each trip.

    Riders tip more on longer trips, late at night, on weekdays, and when
    picked up near the busiest centre of the map (zone (0, 0)).
    """
    central = np.exp(-np.sum(pickup_position**2, axis=1) / 30.0)  # 1 at the centre, ~0 in outer boroughs
    logit = (
        -1.2
        + 2.5 * central
        + _TIP_BY_HOUR[hour]
        - 0.7 * (weekday >= 5)
        + 0.9 * np.log1p(distance)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def zone_positions(seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return an (N_ZONES + 1, 2) array of zone centres in miles (row 0 unused)."""
    rng = np.random.default_rng([seed, 1])
    # Zones cluster around a few borough centres, like the real map.
    centres = np.array([[0, 0], [4, -6], [8, 3], [-3, 7], [-10, -9]], dtype=np.float64)
    borough = rng.integers(0, len(centres), N_ZONES + 1)
    return centres[borough] + rng.normal(0.0, 2.2, (N_ZONES + 1, 2))


def generate(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, month: str = DEFAULT_MONTH) -> pa.Table:
    """Generate `rows` trips in one calendar month as an Arrow table."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    rng = np.random.default_rng([seed, 2])
    pos = zone_positions(seed)

    # Where: a few busy zones, pickups and dropoffs drawn by popularity, and
    # dropoffs favouring nearby zones (gravity model).
    popularity = rng.pareto(1.2, N_ZONES + 1) + 0.05
    popularity[0] = 0.0
    popularity[264:] *= 0.02  # "unknown" zones are rare
    pu = rng.choice(N_ZONES + 1, size=rows, p=popularity / popularity.sum())
    do = _draw_dropoffs(rng, pu, pos, popularity)

    straight = np.linalg.norm(pos[pu] - pos[do], axis=1)
    detour = rng.uniform(1.15, 1.6, rows)
    distance = np.where(pu == do, rng.uniform(0.3, 1.8, rows), straight * detour)

    # When: days of the month, hours by demand, seconds uniform.
    start = np.datetime64(f"{month}-01T00:00:00", "us")
    day = rng.integers(0, _days_in_month(month), rows)
    hour = rng.choice(24, size=rows, p=_TRIPS_BY_HOUR / _TRIPS_BY_HOUR.sum())
    second = rng.integers(0, 3600, rows)
    pickup = start + (day * 86_400 + hour * 3600 + second).astype("timedelta64[s]")
    weekday = (pickup.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday

    # How long: distance over a speed that depends on hour and weekday, plus
    # time spent at lights and kerbs, with multiplicative noise.
    weekend = weekday >= 5
    speed = _SPEED_BY_HOUR[hour] * np.where(weekend, 1.25, 1.0)
    speed *= rng.lognormal(0.0, 0.18, rows)
    minutes = 1.5 + distance / speed * 60.0 + rng.exponential(1.2, rows)

    # The outliers real files have.
    u = rng.random(rows)
    distance = np.where(u < 0.012, 0.0, distance)                          # meter not run
    minutes = np.where((u >= 0.012) & (u < 0.017), -rng.uniform(1, 30, rows), minutes)  # clock errors
    minutes = np.where((u >= 0.017) & (u < 0.027), rng.uniform(61, 1440, rows), minutes)  # left running
    minutes = np.where((u >= 0.027) & (u < 0.035), rng.uniform(0, 1, rows), minutes)     # cancelled
    dropoff = pickup + np.round(minutes * 60_000_000).astype("timedelta64[us]")

    distance = np.round(distance, 2)
    fare = np.round(2.5 + 2.5 * distance + 0.35 * np.clip(minutes, 0, 120), 2)
    payment = rng.choice([1.0, 2.0, 3.0, 4.0], size=rows, p=[0.55, 0.42, 0.02, 0.01])
    # The draw is the same one as ever (one uniform per row), compared with a
    # per-row probability, so every other column keeps its exact bytes.
    tipped = (payment == 1.0) & (rng.random(rows) < tip_probability(pos[pu], hour, weekday, distance))
    tip = np.where(tipped, np.round(fare * rng.uniform(0.1, 0.3, rows), 2), 0.0)
    extra = np.where((hour >= 20) | (hour < 6), 0.5, 0.0) + np.where(weekend, 0.0, 0.5 * (hour >= 16) * (hour < 20))
    tolls = np.where(rng.random(rows) < 0.02, 6.12, 0.0)
    congestion = np.where(rng.random(rows) < 0.1, 2.75, 0.0)
    total = np.round(fare + extra + 0.5 + tip + tolls + 0.3 + congestion, 2)

    columns = {
        "VendorID": rng.choice([1, 2], size=rows, p=[0.2, 0.8]).astype(np.int64),
        "lpep_pickup_datetime": pickup.astype("datetime64[us]"),
        "lpep_dropoff_datetime": dropoff,
        "store_and_fwd_flag": np.where(rng.random(rows) < 0.01, "Y", "N"),
        "RatecodeID": rng.choice([1.0, 5.0], size=rows, p=[0.97, 0.03]),
        "PULocationID": pu.astype(np.int64),
        "DOLocationID": do.astype(np.int64),
        "passenger_count": rng.choice([1.0, 2.0, 3.0, 5.0], size=rows, p=[0.8, 0.12, 0.04, 0.04]),
        "trip_distance": distance,
        "fare_amount": fare,
        "extra": extra,
        "mta_tax": np.full(rows, 0.5),
        "tip_amount": tip,
        "tolls_amount": tolls,
        "ehail_fee": np.full(rows, np.nan),
        "improvement_surcharge": np.full(rows, 0.3),
        "total_amount": total,
        "payment_type": payment,
        "trip_type": np.ones(rows),
        "congestion_surcharge": congestion,
    }
    arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in GREEN_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=GREEN_SCHEMA)


def as_yellow(green: pa.Table) -> pa.Table:
    """The same trips in the yellow schema (tpep_ clocks, yellow's columns)."""
    table = green.rename_columns([c.replace("lpep_", "tpep_") for c in green.column_names])
    table = table.append_column("airport_fee", pa.array(np.zeros(len(table))))
    return table.select(YELLOW_SCHEMA.names).cast(YELLOW_SCHEMA)


def write(path: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, month: str = DEFAULT_MONTH,
          schema: str = "green") -> Path:
    """Generate trips and write them to `path` as parquet (green or yellow schema), atomically."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = generate(rows, seed, month)
    if schema == "yellow":
        table = as_yellow(table)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def _days_in_month(month: str) -> int:
    first = np.datetime64(month, "M")
    return int(((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(int))


def _draw_dropoffs(rng: np.random.Generator, pu: np.ndarray, pos: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Draw one dropoff zone per pickup, weighted by popularity / (1 + distance)^2."""
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    weight = popularity[None, :] / (1.0 + dist) ** 2
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(pu))
    dropoff = np.empty(len(pu), dtype=np.int64)
    for zone in np.unique(pu):  # per pickup zone, so memory stays O(rows)
        rows = pu == zone
        dropoff[rows] = np.searchsorted(cdf[zone], u[rows], side="left")
    return np.minimum(dropoff, N_ZONES)

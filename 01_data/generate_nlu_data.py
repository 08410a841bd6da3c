"""Seeded generator of labelled search queries for an Earth-observation data portal.

Why synthetic: the pipeline needs an NLU sample that ships with the repo (no download) and is
hard enough that a model has to learn something. Queries are built from many templates per
intent with paraphrases, optional parts, typos, casing noise and multi-word entities; several
shapes are shared between intents and differ only in a verb ("find|download|show rainfall data
for Kenya"), location names also occur inside dataset names ("CHIRPS Africa"), theme words
inside dataset names ("SMAP soil moisture"), "10-day" is an aggregation or a forecast horizon.

Template language: ``{slot}`` (tagged B-/I-slot), ``{slot:v1|v2}`` (slot restricted to inline
values), ``{macro}`` (expanded, untagged unless it contains slots), ``[optional part]``,
``(alt one|alt two|)`` (choice; an empty alternative is allowed). Words outside slots are "O".

Usage (defaults regenerate the committed sample under 01_data/):
    python 01_data/generate_nlu_data.py --seed 2024 --n 3400 --n-test 500
    python 01_data/generate_nlu_data.py --layout flat --n 10000 --out-dir /tmp/nlu
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # script run: make the repo's `utils` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.data.nlu_data import (  # noqa: E402
    NluExample,
    validate_example,
    write_bio_folder,
    write_jsonl,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- slot values
THEMES = [
    "flood", "floods", "flooding", "flood extent", "drought", "rainfall", "precipitation", "rain",
    "land cover", "land use", "air quality", "PM2.5", "NO2", "aerosol optical depth", "vegetation",
    "NDVI", "EVI", "vegetation health", "VCI", "soil moisture", "temperature",
    "land surface temperature", "LST", "evapotranspiration", "snow cover", "crop yield",
    "cropland", "crop condition", "deforestation", "forest loss", "tree cover", "burned area",
    "wildfire", "active fires", "surface water", "water bodies", "sea surface temperature",
    "elevation", "population", "night lights", "urban extent", "built-up area", "heat waves",
    "dry spells", "SPI", "SPEI", "cyclone tracks", "storm surge", "landslides", "groundwater",
    "chlorophyll", "sea level",
]
DATASETS = [
    "Sentinel-2", "sentinel 2", "Sentinel-2 L2A", "S2", "Sentinel-1", "Sentinel-1 SAR",
    "Sentinel-5P", "Sentinel-3 OLCI", "Landsat 8", "Landsat 9", "Landsat 5", "Landsat",
    "Landsat collection 2", "MODIS", "MODIS NDVI", "MOD13Q1", "MODIS land surface temperature",
    "MODIS burned area", "VIIRS", "VIIRS night lights", "CHIRPS", "CHIRPS v2", "CHIRPS Africa",
    "CHIRP", "ERA5", "ERA5-Land", "GPM IMERG", "IMERG", "TAMSAT", "ARC2 Africa", "SMAP",
    "SMAP soil moisture", "ESA CCI soil moisture", "ESA WorldCover", "ESA WorldCover 2021",
    "Copernicus Global Land Cover", "Dynamic World", "GloFAS", "EFAS Europe", "SRTM",
    "Copernicus DEM", "GHSL", "WorldPop", "FIRMS", "Hansen Global Forest Change",
    "JRC Global Surface Water", "CAMS", "US Drought Monitor", "India IMD gridded rainfall",
    "Australia BoM rainfall", "FEWS NET East Africa", "MERRA-2", "ECMWF SEAS5", "GEFS", "TerraClimate",
]
FORECAST_DATASETS = [
    "GloFAS", "ECMWF SEAS5", "GEFS", "GFS", "ECMWF HRES", "EFAS Europe", "CHIRPS-GEFS", "CAMS",
]
COUNTRIES = [
    "Kenya", "Ethiopia", "Somalia", "Mozambique", "Bangladesh", "India", "Pakistan", "Brazil",
    "Peru", "Niger", "Chad", "Mali", "Sudan", "South Sudan", "Uganda", "Tanzania", "Malawi",
    "Zambia", "Zimbabwe", "Madagascar", "Nepal", "Vietnam", "Philippines", "Indonesia", "Haiti",
    "Guatemala", "Honduras", "Afghanistan", "Yemen", "Nigeria", "Ghana", "Senegal",
    "Burkina Faso", "Democratic Republic of the Congo", "DRC", "Central African Republic",
    "Australia", "United States", "USA", "Spain", "Italy", "Germany", "Netherlands", "Chile",
    "Morocco", "Iraq", "Syria", "Myanmar", "Cambodia", "Colombia", "Bolivia", "Angola",
]
REGIONS = [
    "Africa", "East Africa", "West Africa", "Southern Africa", "the Sahel", "Horn of Africa",
    "Europe", "South Asia", "Southeast Asia", "Latin America", "the Caribbean", "Central America",
    "Turkana", "Marsabit county", "Mandera", "Garissa", "Tigray", "Afar region", "Oromia",
    "Somali region", "Sindh province", "Punjab", "Balochistan", "Maharashtra", "Rajasthan",
    "Ceara", "Nairobi", "Addis Ababa", "Dhaka", "Sylhet", "Lake Victoria basin", "Lake Victoria",
    "Nile delta", "Limpopo river basin", "Mekong delta", "Okavango delta", "Lake Chad basin",
    "Amazon basin", "Rift Valley", "Karamoja", "Sofala province", "Beira", "Po valley",
    "Murray-Darling basin", "California", "Texas", "Victoria", "Queensland", "Cox's Bazar",
    "Kathmandu valley", "Mindanao", "Java", "Sumatra", "Niger delta", "Gao", "Timbuktu",
]
DIRECTIONS = ["northern", "southern", "eastern", "western", "central", "north", "south",
              "north-east", "south-west", "coastal"]
ADMIN_LEVELS = [
    "district", "county", "province", "region", "state", "municipality", "sub-county", "ward",
    "country", "admin 1", "admin 2", "admin level 2", "adm2", "adm1", "woreda", "upazila",
    "catchment", "watershed", "grid cell", "pixel",
]
ADMIN_PLURALS = ["districts", "counties", "provinces", "regions", "states", "municipalities",
                 "woredas", "catchments", "countries"]
RESOLUTIONS = [
    "10 m", "10m", "20 m", "30 m", "30m", "60m", "100 m", "250 m", "250m", "500 m", "1 km", "1km",
    "5 km", "5km", "10 km", "0.05 degree", "0.05°", "0.1 degree", "0.1 deg", "0.25 degree",
    "0.25°", "0.5 degree", "1 arc-second", "3 arc-seconds", "high resolution", "native resolution",
]
FILE_FORMATS = [
    "geotiff", "GeoTIFF", "tiff", "tif", "netcdf", "NetCDF", "NetCDF4", "nc", "csv", "CSV",
    "shapefile", "shp", "GeoJSON", "geojson", "COG", "cloud optimized geotiff", "zarr", "Zarr",
    "excel", "xlsx", "json", "png", "KML", "HDF5", "GRIB", "grib2", "parquet", "GeoPackage",
]
AGGREGATIONS = [
    "daily", "weekly", "dekadal", "10-day", "monthly", "seasonal", "annual", "yearly", "16-day",
    "8-day", "hourly", "multi-year", "climatological", "bi-weekly", "quarterly",
]
STATISTICS = [
    "average", "mean", "total", "maximum", "max", "minimum", "min", "median", "anomaly",
    "anomalies", "standard deviation", "trend", "cumulative", "percentage", "90th percentile",
    "number of days", "sum", "long-term average", "z-score", "variability", "peak",
]
HORIZONS = [
    "tomorrow", "next week", "next 7 days", "next 10 days", "next month", "next 3 months",
    "coming season", "next 48 hours", "next 24 hours", "coming weeks", "next season",
    "this weekend", "next 5 days", "next two weeks", "10-day", "7-day", "next 6 months",
    "coming days", "rest of the season", "next year",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
MONTHS_SHORT = [m[:3] for m in MONTHS]
SEASON_CODES = ["MAM", "OND", "JJAS", "DJF", "JJA", "SON"]
PERIOD_WORDS = [
    "last year", "last month", "this year", "this month", "past 30 days", "last 5 years",
    "last decade", "past week", "last 3 months", "last season", "past 10 years", "the 1990s",
    "the 2000s", "the 2010s", "the dry season", "the rainy season", "the long rains",
    "the short rains", "El Nino years", "recent years",
]

State = dict[str, int]
SlotFn = Callable[[random.Random, State], str]


def _year(rng: random.Random, lo: int = 1981, hi: int = 2024) -> int:
    return rng.randint(lo, hi)


def _date(rng: random.Random, year: int) -> str:
    kind = rng.random()
    if kind < 0.45:
        return str(year)
    if kind < 0.65:
        return f"{rng.choice(MONTHS)} {year}"
    if kind < 0.75:
        return f"{rng.choice(MONTHS_SHORT)} {year}"
    if kind < 0.88:
        return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind < 0.95:
        return f"{rng.randint(1, 12):02d}/{year}"
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}"


def _start_date(rng: random.Random, state: State) -> str:
    year = _year(rng, 1981, 2022)
    state["start_year"] = year
    return _date(rng, year)


def _end_date(rng: random.Random, state: State) -> str:
    lo = state.get("start_year", 1990) + 1
    return _date(rng, rng.randint(min(lo, 2024), 2024))


def _time_period(rng: random.Random, state: State) -> str:
    kind = rng.random()
    year = _year(rng, 1985, 2024)
    if kind < 0.35:
        return str(year)
    if kind < 0.55:
        return rng.choice(PERIOD_WORDS)
    if kind < 0.65:
        return f"{rng.choice(MONTHS)} {year}"
    if kind < 0.73:
        return f"{rng.choice(['summer', 'winter', 'spring', 'autumn'])} {year}"
    if kind < 0.81:
        return f"{year}-{min(year + rng.randint(1, 10), 2024)}"
    if kind < 0.87:
        return f"{rng.choice(SEASON_CODES)} {year}"
    if kind < 0.93:
        return f"{year} {rng.choice(['rainy season', 'long rains', 'short rains', 'growing season', 'monsoon'])}"
    if kind < 0.97:
        return f"Q{rng.randint(1, 4)} {year}"
    return f"{year}/{(year + 1) % 100:02d}"


def _location(rng: random.Random, state: State) -> str:
    kind = rng.random()
    if kind < 0.5:
        return rng.choice(COUNTRIES)
    if kind < 0.82:
        return rng.choice(REGIONS)
    country = rng.choice(COUNTRIES)
    return f"{rng.choice(DIRECTIONS)} {country}"


def _choice(values: list[str]) -> SlotFn:
    return lambda rng, state: rng.choice(values)


SLOTS: dict[str, SlotFn] = {
    "theme": _choice(THEMES),
    "location": _location,
    "admin_level": _choice(ADMIN_LEVELS),
    "start_date": _start_date,
    "end_date": _end_date,
    "time_period": _time_period,
    "dataset": _choice(DATASETS),
    "resolution": _choice(RESOLUTIONS),
    "file_format": _choice(FILE_FORMATS),
    "aggregation": _choice(AGGREGATIONS),
    "statistic": _choice(STATISTICS),
    "forecast_horizon": _choice(HORIZONS),
}

# --------------------------------------------------------------------------- macros
MACROS: dict[str, str] = {
    "pre": "(please|pls|can you|could you please|could you|hi,|hello,|hey|i need to|i want to"
    "|i would like to|i'd like to|help me|quickly|)",
    "dl": "(download|dowload|get|grab|export|fetch|save|pull|retrieve)",
    "find": "(find|search|search for|look for|looking for|locate|browse|list|show me|are there"
    "|search the catalogue for|query|find me)",
    "data": "(data|dataset|datasets|layers|layer|imagery|images|maps|products|files|rasters"
    "|time series|observations|grids)",
    "date_range": "(from {start_date} to {end_date}|between {start_date} and {end_date}"
    "|{start_date} to {end_date}|{start_date} - {end_date}|since {start_date}|after {start_date}"
    "|until {end_date}|before {end_date}|{start_date} through {end_date}|starting {start_date}"
    "|from {start_date} onwards|up to {end_date}|{start_date} till {end_date})",
    "when": "(in {time_period}|for {time_period}|during {time_period}|{time_period}|{date_range}"
    "|{date_range}|over {time_period})",
    "where": "(in {location}|for {location}|over {location}|across {location}|of {location}"
    "|around {location}|covering {location}|in {location}|for {location}|within {location})",
    "fmt": "(as {file_format}|in {file_format} format|in {file_format}|to {file_format}"
    "|as a {file_format} file|{file_format}|as {file_format} files|format {file_format})",
    "res": "(at {resolution}|at {resolution} resolution|{resolution} resolution"
    "|with {resolution} pixels|{resolution}|res {resolution})",
    "adm": "(by {admin_level}|per {admin_level}|at {admin_level} level|for each {admin_level}"
    "|aggregated to {admin_level}|{admin_level} level|by {admin_level} level"
    "|broken down by {admin_level})",
    "q": "(?|)",
    "thanks": "(thanks|thx|thank you|asap|for a report|for my thesis|please|pls|urgently|)",
    "ftheme": "{theme:rainfall|rain|precipitation|flood|floods|flooding|flood extent|drought"
    "|temperature|air quality|PM2.5|NO2|heat waves|dry spells|soil moisture|storm surge"
    "|cyclone tracks|river discharge|snow cover|wildfire|SPI|crop yield|vegetation health}",
    "cmp": "(drier|wetter|hotter|colder|greener|more flooded|more affected|worse|better)",
}

TEMPLATES: dict[str, list[str]] = {
    "search_dataset": [
        "{pre} {find} {theme} {data} {where} [{when}]",
        "[{pre}] {find} {dataset} {data} {where} [{when}] [{thanks}]",
        "{theme} {data} {where} [{when}] [{res}]",
        "{aggregation} {theme} {where} [{when}]",
        "{aggregation} {theme} {where} {date_range} [{res}]",
        "which (datasets|products|layers|collections) (have|cover|include|contain) {theme} {where} [{when}] {q}",
        "is there (any|a) [{resolution}] {theme} (dataset|layer|product|data) {where} [{when}] {q}",
        "do you have {dataset} [{data}] (for|of|over) {location} [{when}] {q}",
        "(what|which) {dataset} (scenes|tiles|images|granules) are available {where} [{when}] {q}",
        "{find} {resolution} {theme} {data} [{where}]",
        "{find} {data} (about|on|for|related to) {theme} [{where}] [{when}]",
        "(available|latest|recent|new|most recent) {dataset} {data} {where}",
        "{dataset} {where} [{when}] [{res}]",
        "{find} {theme} (layers|datasets|products) (from|by|derived from) {dataset}",
        "(cloud free|cloud-free|low cloud) {dataset} {data} {where} [{when}]",
        "(search|catalogue search|catalog search) {theme} [{where}]",
        "{theme} {where} {when}",
        "what {data} do you have (on|about|for) {theme} {where} {q}",
        "{find} {aggregation} {theme} {data} [{res}] [{where}]",
        "(where|where else) (can|do) i find {theme} {data} {where} {q}",
    ],
    "download_data": [
        "{pre} {dl} {theme} {data} {where} [{when}] [{fmt}]",
        "[{pre}] {dl} {dataset} [{data}] {where} [{when}] {fmt}",
        "{aggregation} {theme} {where} {date_range} {fmt}",
        "{theme} {where} [{when}] {fmt}",
        "{dl} (the|all|all the) {aggregation} {dataset} (files|rasters|layers|tiles) {where} [{when}]",
        "(i need|i want|give me|send me) {theme} {data} {where} [{when}] [{fmt}] [{thanks}]",
        "(give me|send me|i need|can i have) a {file_format} (of|with) {theme} {where} [{when}]",
        "{dl} {resolution} {dataset} {data} {where} [{fmt}]",
        "(bulk download|batch download|mass download) {dataset} [{data}] {where} {date_range}",
        "{dl} {theme} {adm} {where} [{when}] {fmt}",
        "export {statistic} {theme} {where} {adm} (to|as) {file_format}",
        "{dl} {dataset} [tiles] {where} {res} [{fmt}]",
        "{dl} {aggregation} {theme} {where} [{when}]",
        "(download|dowload) {theme} {data} {where}",
        "{dl} (this|that|the) {theme} layer [{fmt}]",
        "{file_format} (download|export|file) (of|for) {dataset} {where} [{when}]",
        "{pre} {dl} {data} for {theme} {where} {date_range} [{res}] [{fmt}]",
        "(download link|direct link|ftp link) (for|to) {dataset} {where}",
    ],
    "get_statistics": [
        "what (was|is|were) the {statistic} {theme} {where} {when} {q}",
        "how much {theme:rain|rainfall|precipitation} fell {where} {when} {q}",
        "{statistic} {theme} {where} {when} [{adm}]",
        "{aggregation} {statistic} {theme} {where} {adm} [{when}]",
        "(give me|show me|get|compute|calculate|tell me) (the|) {statistic} [of] {theme} {where} {when} [{adm}]",
        "how many {theme:flood events|fire events|fires|dry days|hot days|rainy days|wildfires|heat waves} "
        "(were there|occurred|happened|were recorded) {where} {when} {q}",
        "{statistic:percentage|share|fraction|area|proportion} of {location} "
        "(affected by|under|covered by|hit by) {theme} {when}",
        "{theme} (stats|statistics|summary|figures|numbers|summary statistics) (for|of) {location} [{when}] [{adm}]",
        "what is the {statistic} {theme} {where} {when} according to {dataset} {q}",
        "{dataset} {statistic} {theme} {where} {when}",
        "{statistic:trend|change|trends|changes} in {theme} {where} {date_range}",
        "how (dry|wet|hot|green|bad) was {location} {when} {q}",
        "(calculate|compute) {aggregation} {theme} {statistic} {adm} {where}",
        "{statistic} {aggregation} {theme} {where} {when}",
        "what percentage of {location} (is|was) {theme} {when} {q}",
        "(zonal statistics|zonal stats) (of|for) {theme} {adm} {where} [{when}]",
        "{aggregation} {theme} {statistic} {where} {date_range}",
        "(was|is) {time_period} (a|an) (dry|wet|hot|record|unusual) year (for|in) {location} {q}",
    ],
    "get_forecast": [
        "{ftheme} (forecast|forecasts|outlook) (for|in|over) {location} [{forecast_horizon}]",
        "will it rain in {location} {forecast_horizon} {q}",
        "will there be {ftheme} in {location} {forecast_horizon} {q}",
        "(forecast|predict|project) {ftheme} {where} [for] [the] {forecast_horizon}",
        "(expected|predicted|projected|forecasted|forecast) {ftheme} {where} {forecast_horizon}",
        "{dataset:GloFAS|ECMWF SEAS5|GEFS|GFS|ECMWF HRES|EFAS Europe|CHIRPS-GEFS|CAMS} "
        "(forecast|forecasts|prediction) {where} [{forecast_horizon}]",
        "what is the {ftheme} outlook (for|in) {location} [{forecast_horizon}] {q}",
        "{ftheme} risk {where} {forecast_horizon}",
        "is (a|any) {ftheme} (expected|likely|coming|predicted) {where} {forecast_horizon} {q}",
        "{aggregation} {ftheme} forecast [{where}] [{res}]",
        "show me the {forecast_horizon} {ftheme} forecast [{where}]",
        "{aggregation:seasonal|monthly|weekly|sub-seasonal} (outlook|forecast) {where}",
        "{ftheme} (prediction|predictions|projection|projections|forecast) {where} {forecast_horizon}",
        "how much {theme:rain|rainfall|precipitation} (will fall|is expected|to expect) {where} {forecast_horizon} {q}",
        "(early warning|early warnings) (for|of) {ftheme} {where} [{forecast_horizon}]",
        "{forecast_horizon} {ftheme} forecast {where} [{fmt}]",
        "what will the {ftheme} be {where} {forecast_horizon} {q}",
    ],
    "compare_regions": [
        "compare {theme} (in|between|for|across) {location} (and|with|vs|versus) {location} [{when}]",
        "{location} (vs|versus|vs.|compared to|against) {location} {theme} [{when}]",
        "(difference|differences) in {statistic} {theme} between {location} and {location} [{when}]",
        "(which|what) (region|country|district|area|place) (is|was) {cmp}, {location} or {location} [{when}] {q}",
        "(is|was) {location} {cmp} than {location} {when} {q}",
        "{theme} {location} (vs|versus) {location} {date_range}",
        "compare {dataset} {theme} (for|over|in) {location} and {location}",
        "how does {location} compare (to|with) {location} (in terms of|for|on) {theme} [{when}] {q}",
        "rank (the|) {admin_level:districts|counties|provinces|regions|states|woredas|countries} "
        "(of|in) {location} by {statistic} {theme} [{when}]",
        "side by side {theme} (maps|charts|plots) (of|for) {location} and {location}",
        "{statistic} {theme} {location} compared (to|with) {location} {when}",
        "(contrast|compare) {aggregation} {theme} (of|in) {location} (and|with) {location}",
        "which {admin_level} in {location} (has|had) the (highest|lowest|most|least) {theme} {when} {q}",
        "compare {location} and {location} [{theme}]",
    ],
    "ask_definition": [
        "what (is|are) {theme} {q}",
        "what (is|does) {theme} mean {q}",
        "what is {dataset} {q}",
        "(define|definition of|meaning of|explain) {theme} [please]",
        "what does {dataset} (measure|contain|show|cover) {q}",
        "explain {theme} to me",
        "how is {theme} (calculated|computed|measured|derived|estimated) {q}",
        "what is the difference between {dataset} and {dataset} {q}",
        "what does {aggregation} mean {q}",
        "what is (a|an|the) {statistic} (in|for) {theme} {q}",
        "what is the (spatial|temporal|native|pixel) resolution of {dataset} {q}",
        "what units (is|are) {theme} (in|measured in|given in) {q}",
        "what is {theme} and why does it matter",
        "{theme} (definition|meaning|explained)",
        "tell me about {dataset}",
        "what is the difference between {theme} and {theme} {q}",
        "is {dataset} (free|open|open data|optical|radar) {q}",
        "how often is {dataset} updated {q}",
        "what does (a|the) {statistic} of {theme} (tell me|mean|indicate) {q}",
    ],
    "get_help": [
        "how do i (download|export|save) [{data}] [{fmt}] {q}",
        "(i can't|i cannot|can't|unable to|i am unable to) "
        "(log in|login|sign in|download anything|open the file|see the map|find the download button)",
        "(reset|change|i forgot) my password",
        "how (do i|to|should i) (cite|reference|acknowledge) {dataset} {q}",
        "how (do i|to|can i) open {file_format} files [in (qgis|excel|python|arcgis|r)] {q}",
        "(help|support|contact support|talk to a human|user guide|documentation|faq|tutorial|help me please)",
        "is there an api (for|to access) {dataset} {q}",
        "the (download|export|search|map) (button|page|link|tool) "
        "(is broken|doesn't work|does not work|is not working|keeps failing)",
        "(what|which) file formats (are available|do you support|are supported|can i download) {q}",
        "how do i (get|create|generate) an api key {q}",
        "why is my {file_format} (file|download|export) (empty|corrupted|so large|not opening) {q}",
        "how (do i|to) (use|filter by|upload) {admin_level} boundaries {q}",
        "(where|how) can i find the (licence|license|terms of use) (for|of) {dataset} {q}",
        "my download (failed|is stuck|timed out) [{thanks}]",
        "how do i (draw|upload) (an area|a polygon|a shapefile|my own area) {q}",
        "(can i|how do i) download data (as|in) {file_format} {q}",
        "how do i select a (date range|time period|region|country) {q}",
        "(the site|the portal|the map|this page) is (slow|not loading|down) [{thanks}]",
    ],
    "subscribe_alert": [
        "(notify|alert|warn|email|tell) me (when|if) {theme} {where} "
        "(exceeds|goes above|drops below|is above|is below) "
        "(normal|average|the threshold|{statistic} levels)",
        "(subscribe|sign me up) (to|for) {theme} (alerts|warnings|updates) (for|in) {location}",
        "send me (an email|a notification|an alert|a text) when new {dataset} {data} (is|are) available {where}",
        "{theme} (alerts|warnings|notifications|alert) {where} [{aggregation}]",
        "set up (a|an) {aggregation} {theme} alert (for|in) {location}",
        "{aggregation:weekly|daily|monthly|dekadal} (email|digest|bulletin|report) "
        "(with|of|on) {theme} (for|in) {location}",
        "keep me (posted|updated|informed) (on|about) {theme} {where}",
        "alert me about {theme} risk {where} [{forecast_horizon}]",
        "(notify|email|ping) me when {dataset} {where} (is updated|has new data|gets new scenes)",
        "(create|add|set) (an alert|a notification|a watch) (for|on) {theme} {where}",
        "(unsubscribe|stop alerts|cancel alerts) (for|from) {theme} [{where}]",
        "(i want|i would like) (alerts|notifications|updates) (when|if) {theme} {where} (starts|occurs|is detected)",
    ],
    "show_map": [
        "(show|display|visualize|visualise|plot|map) {theme} {where} [{when}]",
        "(show|display) [me] (a|the) {theme} map (of|for) {location} [{when}]",
        "{theme} map {where} [{when}] [{res}]",
        "(show|display|overlay|open) {dataset} [layer] (on the map|over {location}) [{when}]",
        "(zoom to|go to|center the map on|pan to|fly to) {location} [and show {theme}]",
        "(map|visualise|plot) {statistic} {theme} {adm} {where} {when}",
        "(show|display) [me] {aggregation} {theme} (for|in|over) {location} (on a map|on the map)",
        "(add|turn on|toggle|switch on) (the|) {dataset} layer",
        "(true color|false color|rgb|natural colour) {dataset} (image|composite|mosaic) {where} [{when}]",
        "(show|display|view) {theme} {data} {where} [{when}]",
        "(animate|animation of|timelapse of) {aggregation} {theme} {where} {date_range}",
        "(show|view|see) {resolution} {dataset} {where}",
        "(show|display) {location} (on the map|boundaries) [{adm}]",
        "(heatmap|heat map|choropleth) of {theme} {adm} {where} [{when}]",
    ],
}
INTENT_WEIGHTS: dict[str, float] = {
    "search_dataset": 0.21, "download_data": 0.18, "get_statistics": 0.15, "get_forecast": 0.10,
    "compare_regions": 0.09, "ask_definition": 0.08, "show_map": 0.08, "subscribe_alert": 0.06,
    "get_help": 0.05,
}


# --------------------------------------------------------------------------- template engine
@dataclass
class _Node:
    kind: str  # "seq" | "opt" | "alt" | "word" | "ref"
    value: str = ""
    children: list[_Node] | None = None


def _parse(template: str) -> _Node:
    """Parse the template language into a small tree (raises ValueError on unbalanced input)."""
    pos = 0

    def seq(stop: str) -> tuple[_Node, str | None]:
        nonlocal pos
        items: list[_Node] = []
        word = ""

        def flush() -> None:
            nonlocal word
            if word:
                items.append(_Node("word", word))
                word = ""

        while pos < len(template):
            ch = template[pos]
            if ch in stop:
                flush()
                pos += 1
                return _Node("seq", children=items), ch
            pos += 1
            if ch == " ":
                flush()
            elif ch == "{":
                end = template.index("}", pos)
                flush()
                items.append(_Node("ref", template[pos:end]))
                pos = end + 1
            elif ch == "[":
                flush()
                inner, closer = seq("]")
                if closer != "]":
                    raise ValueError(f"unbalanced [ in {template!r}")
                items.append(_Node("opt", children=[inner]))
            elif ch == "(":
                flush()
                alts = []
                while True:
                    inner, closer = seq("|)")
                    alts.append(inner)
                    if closer == ")":
                        break
                    if closer is None:
                        raise ValueError(f"unbalanced ( in {template!r}")
                items.append(_Node("alt", children=alts))
            elif ch in "])|":
                raise ValueError(f"unexpected {ch!r} in {template!r}")
            else:
                word += ch
        flush()
        return _Node("seq", children=items), None

    node, closer = seq("")
    if closer is not None:
        raise ValueError(f"unbalanced {closer!r} in {template!r}")
    return node


_PARSED: dict[str, _Node] = {}


def _parsed(template: str) -> _Node:
    if template not in _PARSED:
        _PARSED[template] = _parse(template)
    return _PARSED[template]


def _expand(node: _Node, rng: random.Random, state: State, out: list[tuple[str, str]]) -> None:
    if node.kind == "word":
        out.append((node.value, "O"))
    elif node.kind == "seq":
        for child in node.children or []:
            _expand(child, rng, state, out)
    elif node.kind == "opt":
        if rng.random() < 0.5:
            _expand(node.children[0], rng, state, out)  # type: ignore[index]
    elif node.kind == "alt":
        _expand(rng.choice(node.children or []), rng, state, out)
    elif node.kind == "ref":
        name, _, inline = node.value.partition(":")
        if name in SLOTS:
            value = rng.choice(inline.split("|")) if inline else SLOTS[name](rng, state)
            for i, tok in enumerate(value.split()):
                out.append((tok, f"{'B' if i == 0 else 'I'}-{name}"))
        elif name in MACROS:
            _expand(_parsed(MACROS[name]), rng, state, out)
        else:
            raise KeyError(f"unknown slot or macro {name!r}")


# --------------------------------------------------------------------------- noise
_KEYBOARD_NEIGHBOURS = {
    "a": "qsz", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "y": "tu", "z": "x",
}


def _typo(token: str, rng: random.Random) -> str:
    """One realistic keyboard slip: swap, drop, double or hit a neighbouring key."""
    i = rng.randrange(1, len(token) - 1)
    op = rng.random()
    if op < 0.3:
        return token[:i] + token[i + 1] + token[i] + token[i + 2 :]
    if op < 0.55:
        return token[:i] + token[i + 1 :]
    if op < 0.75:
        return token[:i] + token[i] + token[i:]
    near = _KEYBOARD_NEIGHBOURS.get(token[i].lower())
    return token[:i] + rng.choice(near) + token[i + 1 :] if near else token


def _add_noise(pairs: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    pairs = [
        (_typo(tok, rng), tag) if len(tok) >= 4 and tok.isalpha() and rng.random() < 0.025 else (tok, tag)
        for tok, tag in pairs
    ]
    style = rng.random()
    if style < 0.35:  # users type lower case
        pairs = [(tok.lower(), tag) for tok, tag in pairs]
    elif style < 0.45:
        pairs = [(pairs[0][0][:1].upper() + pairs[0][0][1:], pairs[0][1])] + pairs[1:]
    elif style < 0.47:
        pairs = [(tok.upper(), tag) for tok, tag in pairs]
    elif style < 0.52:  # Title Case Everything
        pairs = [(tok[:1].upper() + tok[1:], tag) for tok, tag in pairs]
    return pairs


# --------------------------------------------------------------------------- public API
def generate_example(rng: random.Random, intent: str | None = None) -> NluExample:
    """One random query (of ``intent`` if given)."""
    if intent is None:
        intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
    template = rng.choice(TEMPLATES[intent])
    pairs: list[tuple[str, str]] = []
    _expand(_parsed(template), rng, {}, pairs)
    pairs = _add_noise(pairs, rng)
    ex = NluExample(
        text=" ".join(tok for tok, _ in pairs), intent=intent, tags=tuple(tag for _, tag in pairs)
    )
    validate_example(ex, f"template {template!r}")
    return ex


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def generate_examples(n: int, seed: int, unique: bool = True) -> list[NluExample]:
    """``n`` queries from a fixed seed; ``unique`` drops repeats (compared case-insensitively)."""
    rng = random.Random(seed)
    out: list[NluExample] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} unique queries (got {len(out)})")
        ex = generate_example(rng)
        key = _norm(ex.text)
        if unique and key in seen:
            continue
        seen.add(key)
        out.append(ex)
    return out


def _with_split(examples: list[NluExample], split: str | None) -> list[NluExample]:
    return [NluExample(ex.text, ex.intent, ex.tags, split) for ex in examples]


def write_portal_sample(out_dir: Path, n: int, n_test: int, seed: int) -> dict[str, int]:
    """The committed default sample: two overlapping JSONL logs + a BIO folder, and test data.

    ``out_dir/sourcedata/nlu/`` gets ``portal_queries_2024.jsonl``, ``portal_queries_2025.jsonl``
    (about 8 % of 2024's queries repeated, as in real logs) and ``eo_portal_bio/{train,dev,test}``;
    ``out_dir/testdata/nlu/test.jsonl`` holds ``n_test`` queries that occur nowhere in the source.
    """
    pool = generate_examples(n + n_test, seed)
    source, test = pool[:n], pool[n:]
    n_bio = int(n * 0.28)
    bio, logs = source[:n_bio], source[n_bio:]
    n_tr, n_dev = int(n_bio * 0.7), int(n_bio * 0.15)
    half = len(logs) // 2
    log_2024, log_2025 = logs[:half], logs[half:]
    rng = random.Random(seed + 1)
    dups = rng.sample(log_2024, k=max(1, len(log_2024) // 12))
    log_2025 = log_2025 + dups
    rng.shuffle(log_2025)

    src_dir = out_dir / "sourcedata" / "nlu"
    counts = {
        "portal_queries_2024.jsonl": write_jsonl(log_2024, src_dir / "portal_queries_2024.jsonl"),
        "portal_queries_2025.jsonl": write_jsonl(log_2025, src_dir / "portal_queries_2025.jsonl"),
        "testdata/nlu/test.jsonl": write_jsonl(test, out_dir / "testdata" / "nlu" / "test.jsonl"),
    }
    splits = {"train": bio[:n_tr], "dev": bio[n_tr : n_tr + n_dev], "test": bio[n_tr + n_dev :]}
    write_bio_folder(splits, src_dir / "eo_portal_bio")
    counts.update({f"eo_portal_bio/{k}": len(v) for k, v in splits.items()})
    return counts


def write_flat(out_dir: Path, n: int, seed: int) -> dict[str, int]:
    """``train/dev/test.jsonl`` (80/10/10 of ``n``) plus the same splits as ``out_dir/bio/``."""
    pool = generate_examples(n, seed)
    n_tr, n_dev = int(n * 0.8), int(n * 0.1)
    splits = {"train": pool[:n_tr], "dev": pool[n_tr : n_tr + n_dev], "test": pool[n_tr + n_dev :]}
    counts = {}
    for name, exs in splits.items():
        counts[f"{name}.jsonl"] = write_jsonl(_with_split(exs, name), out_dir / f"{name}.jsonl")
    write_bio_folder(splits, out_dir / "bio")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2024, help="random seed (same seed, same files)")
    parser.add_argument("--n", type=int, default=3400, help="number of source queries")
    parser.add_argument("--n-test", type=int, default=500, help="held-out test queries (portal layout)")
    parser.add_argument(
        "--out-dir", type=Path, default=Path(__file__).resolve().parent,
        help="portal layout: writes <out-dir>/sourcedata/nlu and <out-dir>/testdata/nlu "
        "(default: this script's folder, i.e. the committed sample)",
    )
    parser.add_argument(
        "--layout", choices=["portal", "flat"], default="portal",
        help="portal: overlapping JSONL logs + BIO folder + test file; flat: train/dev/test",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.layout == "portal":
        counts = write_portal_sample(args.out_dir, args.n, args.n_test, args.seed)
    else:
        counts = write_flat(args.out_dir, args.n, args.seed)
    for name, count in counts.items():
        print(f"{count:6d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

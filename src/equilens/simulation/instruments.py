"""Instrument and observation settings of the simulator presets, as data with their sources.

Each :class:`Instrument` holds every number the renderer needs to make an image of one instrument:
pixel grid, point-spread function and noise. The numbers are copied here (not read from lenstronomy at
run time) so that a data set's manifest records them and a later lenstronomy release cannot change a
data set silently; ``tests/simulation/test_physics_noise.py`` checks that the copies still agree with the
installed lenstronomy's ``SimulationAPI.ObservationConfig`` modules.

Sources
-------
``deeplense_model_i``
    DeepLense Model I (``mwt5345/DeepLenseSim``, ``deeplense/lens.py``, ``DeepLens.simple_sim``):
    150 x 150 px of 0.05 arcsec, Gaussian PSF with FWHM 0.087 arcsec truncated at 3 sigma,
    Gaussian background rms 0.01 (in units of the lenstronomy model, counts / s per pixel), exposure time
    ``10**U(3, 3.5)`` s, image in counts. No sky or read-noise model: the background rms stands for both.
``euclid_vis``
    lenstronomy 1.14.2, ``lenstronomy/SimulationAPI/ObservationConfig/Euclid.py``, band ``VIS``,
    ``psf_type='GAUSSIAN'``, ``coadd_years=6`` (as DeepLense ``set_instrument('Euclid')``): exposure
    566 s per exposure, 4 exposures, sky 22.3 mag / arcsec^2, zero point 25.72 mag (1 e-/s), seeing
    (PSF FWHM) 0.16 arcsec, read noise 4.2 e- per exposure, pixel 0.101 arcsec, gain 3.1 e-/ADU. The
    lenstronomy file cites Euclid Collaboration papers arXiv:2405.13496, 2405.13501, 2405.13493.
    lenstronomy's ``Observation`` truncates a Gaussian PSF at 5 sigma by default.
``euclid_vis_deeplense``
    The Euclid VIS settings lenstronomy shipped before its 2026 update of ``Euclid.py`` (e.g. commit
    051a341 of ``lenstronomy/lenstronomy``), which DeepLense's Model II used: exposure 565 s x 4,
    sky 22.35 mag / arcsec^2, zero point 24.0 mag, seeing 0.16 arcsec, read noise 4.2 e-, pixel 0.101 arcsec,
    gain 3.1. Only the legacy Model II uses it; the zero point makes a magnitude-20 source 4.9x fainter
    (in e-/s) than with the current settings, so legacy Model II images have the published flux scale.
``hst_wfc3_f160w``
    lenstronomy 1.14.2, ``lenstronomy/SimulationAPI/ObservationConfig/HST.py``, band ``WFC3_F160W`` with
    ``psf_type='GAUSSIAN'``: exposure 5400 s (about two orbits), 1 exposure, sky 22.3 mag / arcsec^2,
    zero point 25.96 mag, seeing 0.08 arcsec (the drizzled-PSF approximation of that file), read noise
    4 e-, pixel 0.08 arcsec (drizzled), gain 2.5 e-/ADU; PSF truncation 5 sigma (lenstronomy default).
    The public DeepLense code never implemented its "HST-like" Model III (``set_instrument`` has no HST
    branch, so ``simple_sim_2`` fails); these lenstronomy settings are the natural reading of its README
    ("modeled after HST observation characteristics as done by default in lenstronomy").

``hst_f160w_dm``, ``hst_f160w_dm_fine``
    The HST-like cameras of the ``hst_dm`` / ``hst_dm_150`` presets: the noise numbers of
    ``hst_wfc3_f160w`` (lenstronomy 1.14.2 ``HST.py`` WFC3_F160W: 5400 s, sky 22.3, zero point 25.96,
    read noise 4 e-), with a realistic PSF instead of lenstronomy's 0.08" "seeing": a Gaussian of FWHM
    0.16" (the WFC3/IR F160W PSF core is about 0.15" FWHM at 1.6 micron in the WFC3 Instrument Handbook,
    and drizzled lens images of programmes such as SLACS / SHARP measure 0.15-0.18"),
    *pixel-integrated*: kernel entry (i, j) is the integral of the Gaussian over pixel (i, j) (a product of
    error-function differences), normalised to 1. The renderer averages its sub-pixel rays into pixels
    before convolving, so the image it convolves is piecewise constant on the pixel grid, and convolving a
    piecewise-constant image with the pixel-integrated kernel is the exact convolution of that image with
    the Gaussian, sampled at pixel centres (a point-sampled Gaussian kernel under-represents a PSF of only
    2 pixels FWHM). Pixels: 0.08" (``hst_f160w_dm``, drizzled as lenstronomy's settings) and 0.04"
    (``hst_f160w_dm_fine``, a finer drizzle for the 150 px preset; the sky per pixel scales with the pixel
    area, the read noise per pixel is kept, an approximation of drizzled noise).

Units: angles in arcsec, times in s, magnitudes in AB-like instrument magnitudes as lenstronomy defines
them (``magnitude_zero_point`` is the magnitude giving 1 e-/s), read noise in e- per exposure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Instrument", "INSTRUMENTS", "NOISE_MODELS", "PSF_MODELS", "get_instrument"]

#: PSF models the renderer implements: ``gaussian`` (lenstronomy's GAUSSIAN: the Gaussian sampled at pixel
#: centres) and ``gaussian_pixel_integrated`` (the Gaussian integrated over each pixel; module docstring).
PSF_MODELS: tuple[str, ...] = ("gaussian", "gaussian_pixel_integrated")

#: Noise models the renderer implements (see ``equilens.simulation.render.add_noise``).
#: ``poisson_gaussian_counts``: image in counts; Poisson source counts once plus Gaussian background.
#: ``legacy_deeplense_counts``: the published DeepLense Model I recipe (source shot noise counted twice,
#: Gaussian background clipped at zero before a final Poisson draw).
#: ``ccd``: image in e-/s; Poisson counts of source plus sky (sky subtracted afterwards) plus Gaussian
#: read noise of every co-added exposure.
NOISE_MODELS: tuple[str, ...] = ("poisson_gaussian_counts", "legacy_deeplense_counts", "ccd")


@dataclass(frozen=True)
class Instrument:
    """One instrument's pixel grid, PSF and noise numbers (see the module docstring for sources).

    Attributes:
        name: registry name.
        description: one line for ``--list-presets``.
        pixel_scale: arcsec per pixel.
        psf_fwhm: FWHM of the Gaussian PSF, arcsec.
        psf_truncation: truncation radius of the Gaussian PSF kernel, in units of its sigma.
        noise_model: one of :data:`NOISE_MODELS`.
        flux_unit: unit of the rendered image ("counts" or "e-/s").
        exposure_time_range: (min, max) total exposure time in s, drawn log-uniformly per image
            (min == max: fixed).
        num_exposures: number of co-added exposures (each adds read noise).
        sky_brightness: sky surface brightness, mag / arcsec^2 (None: no sky term).
        magnitude_zero_point: magnitude of a source giving 1 e-/s (None: no magnitude system).
        read_noise: read noise per exposure, e- (None: none).
        ccd_gain: e- per ADU. Recorded for completeness; images are in e-/s so the gain does not enter.
        background_rms: Gaussian background rms per pixel in counts / s (counts noise models only).
        psf_model: one of :data:`PSF_MODELS`.
    """

    name: str
    description: str
    pixel_scale: float
    psf_fwhm: float
    psf_truncation: float
    noise_model: str
    flux_unit: str
    exposure_time_range: tuple[float, float]
    num_exposures: int
    sky_brightness: float | None
    magnitude_zero_point: float | None
    read_noise: float | None
    ccd_gain: float | None
    background_rms: float | None
    psf_model: str = "gaussian"


_EUCLID_VIS_EXPOSURE_S = 566.0  # per exposure, lenstronomy 1.14.2 Euclid.py VIS_band_obs
_EUCLID_VIS_N_EXPOSURES = 4  # coadd_years=6, lenstronomy 1.14.2 Euclid.py VIS_band_obs
_HST_F160W_EXPOSURE_S = 5400.0  # lenstronomy 1.14.2 HST.py WFC3_F160W_band_obs

_HST_WFC3_F160W = Instrument(
    name="hst_wfc3_f160w",
    description="HST WFC3 F160W (lenstronomy settings): 0.08\"/px, Gaussian PSF 0.08\", 5400 s, "
    "sky 22.3, read noise 4 e-, e-/s",
    pixel_scale=0.08,
    psf_fwhm=0.08,
    psf_truncation=5.0,
    noise_model="ccd",
    flux_unit="e-/s",
    exposure_time_range=(_HST_F160W_EXPOSURE_S, _HST_F160W_EXPOSURE_S),
    num_exposures=1,
    sky_brightness=22.3,
    magnitude_zero_point=25.96,
    read_noise=4.0,
    ccd_gain=2.5,
    background_rms=None,
)

# The realistic-population presets' HST instrument: the same camera with the F160W PSF the lensing
# analyses use (FWHM about 0.15-0.18"), integrated over each pixel, instead of lenstronomy's 0.08" seeing.
_HST_F160W_DM = replace(
    _HST_WFC3_F160W, name="hst_f160w_dm", psf_fwhm=0.16, psf_model="gaussian_pixel_integrated",
    description="HST WFC3 F160W-like: 0.08\"/px, pixel-integrated Gaussian PSF FWHM 0.16\", 5400 s, "
    "sky 22.3, read noise 4 e-, e-/s")

INSTRUMENTS: dict[str, Instrument] = {
    "deeplense_model_i": Instrument(
        name="deeplense_model_i",
        description="DeepLense Model I camera: 0.05\"/px, Gaussian PSF FWHM 0.087\", background rms 0.01, "
        "exposure 10^U(3,3.5) s, counts",
        pixel_scale=0.05,
        psf_fwhm=0.087,
        psf_truncation=3.0,
        noise_model="poisson_gaussian_counts",
        flux_unit="counts",
        exposure_time_range=(10.0**3.0, 10.0**3.5),
        num_exposures=1,
        sky_brightness=None,
        magnitude_zero_point=None,
        read_noise=None,
        ccd_gain=None,
        background_rms=0.01,
    ),
    "euclid_vis": Instrument(
        name="euclid_vis",
        description="Euclid VIS (lenstronomy settings, 6-year coadd): 0.101\"/px, Gaussian PSF 0.16\", "
        "4 x 566 s, sky 22.3, read noise 4.2 e-, e-/s",
        pixel_scale=0.101,
        psf_fwhm=0.16,
        psf_truncation=5.0,
        noise_model="ccd",
        flux_unit="e-/s",
        exposure_time_range=(
            _EUCLID_VIS_EXPOSURE_S * _EUCLID_VIS_N_EXPOSURES,
            _EUCLID_VIS_EXPOSURE_S * _EUCLID_VIS_N_EXPOSURES,
        ),
        num_exposures=_EUCLID_VIS_N_EXPOSURES,
        sky_brightness=22.3,
        magnitude_zero_point=25.72,
        read_noise=4.2,
        ccd_gain=3.1,
        background_rms=None,
    ),
    "euclid_vis_deeplense": Instrument(
        name="euclid_vis_deeplense",
        description="Euclid VIS as in lenstronomy before 2026 (DeepLense Model II): 0.101\"/px, "
        "Gaussian PSF 0.16\", 4 x 565 s, sky 22.35, zero point 24.0, read noise 4.2 e-, e-/s",
        pixel_scale=0.101,
        psf_fwhm=0.16,
        psf_truncation=5.0,
        noise_model="ccd",
        flux_unit="e-/s",
        exposure_time_range=(565.0 * 4, 565.0 * 4),
        num_exposures=4,
        sky_brightness=22.35,
        magnitude_zero_point=24.0,
        read_noise=4.2,
        ccd_gain=3.1,
        background_rms=None,
    ),
    "hst_wfc3_f160w": _HST_WFC3_F160W,
    "hst_f160w_dm": _HST_F160W_DM,
    # the same instrument on a finer drizzled grid (hst_dm_150): only the name, text and pixel scale differ
    "hst_f160w_dm_fine": replace(
        _HST_F160W_DM, name="hst_f160w_dm_fine", pixel_scale=0.04,
        description="HST WFC3 F160W-like, finer drizzle: 0.04\"/px, pixel-integrated Gaussian PSF FWHM "
        "0.16\", 5400 s, sky 22.3, read noise 4 e-, e-/s"),
}


def get_instrument(name: str) -> Instrument:
    """Return the instrument registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    from equilens.errors import ConfigError

    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown instrument {name!r}; valid instruments: {', '.join(sorted(INSTRUMENTS))}"
        ) from None

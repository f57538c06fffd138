"""The browser editor (``i2s serve``, ``make editor``).

:mod:`.jobs` runs one job at a time per device and reports each step (preview, PSNR, time left) to the page;
:mod:`.workspace` is the only folder the server touches (checked uploads, run folders, cached embeddings, a size
cap); :mod:`.runs` turns a page's images and settings into the library's runs, written as the CLI writes them;
:mod:`.controls` turns what the page's controls hold (painted layers, advanced fields, detected faces) into what the
library takes; :mod:`.page` is the Gradio page. No algorithm lives here: every run is an application of :mod:`image2stylegan.apps`.
"""

"""Every page of the labeling app under one namespace (``labeling:``); each feature package
lists its own patterns."""

from labeling.api import urls as api_urls
from labeling.gold import urls as gold_urls
from labeling.jobs import urls as jobs_urls
from labeling.notify import urls as notify_urls
from labeling.probes import urls as probes_urls
from labeling.release import urls as release_urls
from labeling.review import urls as review_urls
from labeling.samples import urls as samples_urls
from labeling.whatif import urls as whatif_urls
from labeling.workers import urls as workers_urls

app_name = "labeling"

urlpatterns = [
    *samples_urls.urlpatterns,
    *jobs_urls.urlpatterns,
    *probes_urls.urlpatterns,
    *whatif_urls.urlpatterns,
    *review_urls.urlpatterns,
    *gold_urls.urlpatterns,
    *release_urls.urlpatterns,
    *api_urls.urlpatterns,
    *workers_urls.urlpatterns,
    *notify_urls.urlpatterns,
]

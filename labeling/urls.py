from django.urls import path

from labeling import review_views, views

app_name = "labeling"

# Sample sets, jobs and the version/policy panels live in views.py; the review queue,
# decisions, finalizing and review notes in review_views.py.
urlpatterns = [*views.urlpatterns, *review_views.urlpatterns]
_ = path

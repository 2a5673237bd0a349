from django.urls import path

from labeling.gold import views

urlpatterns = [
    path("jobs/<int:pk>/items/", views.job_items, name="job_items"),
    path("jobs/<int:pk>/items.csv", views.job_items_csv, name="job_items_csv"),
    path(
        "jobs/<int:pk>/items/<int:item_pk>/gold-history/",
        views.job_item_gold_history,
        name="job_item_gold_history",
    ),
    path("jobs/<int:pk>/gold/", views.job_gold_set, name="job_gold_set"),
]

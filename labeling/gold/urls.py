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
    path("jobs/<int:pk>/gold/audit/", views.job_gold_audit, name="job_gold_audit"),
    path(
        "jobs/<int:pk>/gold/audit/resolve/",
        views.job_gold_audit_resolve,
        name="job_gold_audit_resolve",
    ),
    path(
        "jobs/<int:pk>/gold/audit/explain/",
        views.job_gold_audit_explain,
        name="job_gold_audit_explain",
    ),
]

from django.urls import path

from labeling.notify import views

urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/read/", views.notification_read, name="notification_read"),
    path("notifications/settings/", views.notification_settings, name="notification_settings"),
    path("policies/<int:policy_id>/webhook/", views.policy_webhook, name="policy_webhook"),
    path("policies/<int:policy_id>/activity/", views.policy_activity, name="policy_activity"),
]

from django.urls import path

from labeling.review import views

urlpatterns = [
    path("review/", views.review_queue, name="queue"),
    path("review/<int:task_id>/decide/", views.review_submit, name="review_submit"),
    path("review/<int:task_id>/skip/", views.review_skip, name="review_skip"),
    path("review/skipped/", views.review_unskip, name="review_unskip"),
    path("review/undo/", views.review_undo, name="review_undo"),
    path("review/decisions/", views.decision_list, name="decision_list"),
    path("review/decisions/<int:decision_id>/", views.decision_edit, name="decision_edit"),
    path("review/<int:task_id>/full/", views.review_full, name="review_full"),
    path("jobs/<int:job_id>/review-notes/", views.review_notes_view, name="review_notes"),
]
